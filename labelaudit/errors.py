"""The exceptions labelaudit raises. One line each; the CLI maps them to messages and exit codes.

Messages name the input, what was expected, what was found and what to do, e.g.
``--manifest labels.csv: no column 'label' (columns: path, y); pass --label-column y``.
"""
from __future__ import annotations


class LabelauditError(Exception):
    """Base class: anything labelaudit raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UsageError(LabelauditError):
    """A bad option value, a missing path, an unknown column: the call itself must change."""

    exit_code = 2


class DataError(LabelauditError):
    """The data cannot be audited as given (empty, a single class, too many unreadable files).

    ``errors`` (path, error), when set, lists the files that could not be used, so the caller can
    still write errors.parquet.
    """

    def __init__(self, message: str, errors=None):
        super().__init__(message)
        self.errors = errors


class TrainingError(LabelauditError):
    """Proxy training failed (non-finite loss, device out of memory)."""


class DecodeError(LabelauditError):
    """One image could not be decoded; the message is the one-line reason for errors.parquet."""


class DeviceMemoryError(TrainingError):
    """The device ran out of memory; the message says which setting to lower."""
