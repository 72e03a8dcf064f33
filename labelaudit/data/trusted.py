"""A trusted set: a few samples whose labels someone verified by hand (IEG's probe data, Zhang et al.,
CVPR 2020). Read from a manifest (``path,label``) like any other (sources.list_manifest) and decoded
through the data's own cache; a path may also be in the main data (then its given label there is
known) or not (an extra verified image). What the noise model makes of it is noise/calibration.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError, UsageError


@dataclass
class TrustedSet:
    """Verified samples: ``labels`` (M,) class indices, ``images`` (M, S, S, 3) uint8, and for each the
    row of the main data it also is (``in_data`` ≥ 0) or −1, and its given label there (``given``, or −1)."""

    samples: pd.DataFrame  # path, verified_label
    labels: np.ndarray
    images: np.ndarray
    in_data: np.ndarray
    given: np.ndarray
    source: str

    @property
    def inside(self) -> np.ndarray:
        """(M,) bool: which trusted samples are also in the main data (their given label is known)."""
        return self.in_data >= 0

    def verified_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the trusted samples in the data: their rows of the main data, their verified labels, and
        whether the given label is wrong (verified ≠ given)."""
        inside = self.inside
        return self.in_data[inside], self.labels[inside], self.labels[inside] != self.given[inside]

    def counts(self, k: int) -> np.ndarray:
        """Trusted samples per class (K,)."""
        return np.bincount(self.labels, minlength=k)

    def require_every_class(self, classes: list[str], method: str) -> None:
        """UsageError naming the classes without a trusted sample, for a method that needs them all."""
        missing = [c for c, n in zip(classes, self.counts(len(classes))) if n == 0]
        if missing:
            raise UsageError(f"--trusted {self.source}: {method} needs at least one trusted sample of every class; "
                             f"none for {', '.join(missing[:5])}{'…' if len(missing) > 5 else ''} "
                             f"({len(missing)} class(es)); add some, or leave out {method}")


def load_trusted(path: str | os.PathLike, *, classes: list[str], data_files: Sequence[str], data_labels: np.ndarray,
                 image_size: int, workers: int, cache_dir: Path | None, root: str | os.PathLike | None = None,
                 allow_outside_root: bool = False, path_column: str = "path",
                 label_column: str = "label") -> TrustedSet:
    """Read, decode and match a trusted manifest.

    ``data_files``: the main data's files (absolute or relative to the working folder), one per row
    of its samples, and ``data_labels`` their given labels (class indices), to find which trusted
    samples are also main samples and what label they were given there. Raises UsageError for a
    label that is not one of ``classes``, DataError when a trusted image cannot be read (a hand-checked
    set should be fixed, not silently shrunk).
    """
    from .dataset import decode_cached
    from .sources import list_manifest

    where = {os.path.normpath(os.path.abspath(f)): i for i, f in enumerate(data_files)}
    # the main data's own images may be named anywhere (a worksheet from `export --mode verify` names
    # them absolutely); any other path outside the trusted file's folder is refused as for a manifest
    listing = list_manifest(path, root=root, path_column=path_column, label_column=label_column,
                            allow_outside_root=allow_outside_root, option="--trusted", known_files=where)
    if len(listing.errors):
        first = listing.errors.iloc[0]
        raise DataError(f"--trusted {path}: {len(listing.errors)} row(s) cannot be used (first: {first['path']!r}: "
                        f"{first['error']}); fix the trusted file")
    if len(listing.samples) == 0:
        raise UsageError(f"--trusted {path}: no rows; list verified samples as path,label")
    index = {c: k for k, c in enumerate(classes)}
    unknown = sorted(set(listing.samples["given_label"]) - set(index))
    if unknown:
        raise UsageError(f"--trusted {path}: label(s) {', '.join(map(repr, unknown[:5]))} are not classes of the "
                         f"data ({', '.join(classes[:8])}{'…' if len(classes) > 8 else ''}); use the data's class names")
    # decoded by the main data's stage (same cache); not load_dataset: its two-class floor does not apply here
    decoded = decode_cached(listing.samples["file"].tolist(), image_size=image_size, workers=workers,
                            cache_dir=cache_dir)
    bad = [(p, e) for p, e in zip(listing.samples["path"], decoded.errors) if e is not None]
    if bad:
        raise DataError(f"--trusted {path}: {len(bad)} image(s) cannot be read (first: {bad[0][0]!r}: {bad[0][1]}); "
                        "fix or remove them")
    files = [os.path.normpath(os.path.abspath(f)) for f in listing.samples["file"]]
    in_data = np.array([where.get(f, -1) for f in files], dtype=np.int64)
    labels = listing.samples["given_label"].map(index).to_numpy(dtype=np.int64)
    samples = pd.DataFrame({"path": listing.samples["path"].astype(str),
                            "verified_label": listing.samples["given_label"].astype(str)})
    given = np.where(in_data >= 0, np.asarray(data_labels, dtype=np.int64)[np.maximum(in_data, 0)], -1)
    return TrustedSet(samples, labels, decoded.images, in_data, given, str(path))
