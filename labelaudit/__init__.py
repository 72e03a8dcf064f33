"""labelaudit: find mislabeled samples in image-classification datasets.

    from labelaudit import scan
    result = scan("data/train", out="audit/")
    result.suspects.head()

The public API is imported lazily so that ``import labelaudit`` (and the decode worker processes,
which import :mod:`labelaudit.decode`) does not pay for importing torch.
"""
from __future__ import annotations

from ._version import __version__

__all__ = ["scan", "ScanConfig", "ScanResult", "__version__"]


def __getattr__(name: str):
    if name in ("scan", "ScanConfig", "ScanResult"):
        from . import pipeline as _pipeline

        return getattr(_pipeline, name)
    raise AttributeError(f"module 'labelaudit' has no attribute {name!r}")
