"""Stage 2b — the decoded-image cache: content-addressed, on disk, checked before use.

A cache entry is one decoded image, keyed by the BLAKE2b hash of the file's bytes; the decode
settings (image size, decoder version) pick the cache folder, so changing them never reuses
stale pixels. Entries are stored in packs, one pack per batch of newly decoded images:

    <cache>/v<decoder>-s<size>/<pack>.npy    (n, S, S, 3) uint8
    <cache>/v<decoder>-s<size>/<pack>.json   {"keys": [...], "shape": [...], "checksum": "..."}

The ``.json`` is written last and atomically, so a pack without one (an interrupted write) is
ignored. A pack whose array does not match its recorded shape or checksum is deleted and its
images are decoded again: a corrupted cache is rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np

from ..atomic import write_atomic, write_text_atomic
from .decode import DECODER_VERSION


def default_cache_dir() -> Path:
    """``$LABELAUDIT_CACHE``, else ``$XDG_CACHE_HOME/labelaudit``, else ``~/.cache/labelaudit``."""
    if os.environ.get("LABELAUDIT_CACHE"):
        return Path(os.environ["LABELAUDIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "labelaudit"


def cache_dir_for(enabled: bool, path: str | os.PathLike | None) -> Path | None:
    """The cache folder a run uses: None when caching is off (``--no-cache``), else ``path`` or
    :func:`default_cache_dir`."""
    if not enabled:
        return None
    return Path(path) if path else default_cache_dir()


def array_digest(arr: np.ndarray) -> str:
    """BLAKE2b-128 of an array's bytes, hex: a pack's checksum, and a checkpoint's proof of the pixels."""
    return hashlib.blake2b(np.ascontiguousarray(arr).data, digest_size=16).hexdigest()


def save_npy(path: Path, arr: np.ndarray) -> None:
    """``arr`` as a .npy file at exactly ``path``."""
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a path
        np.save(f, arr, allow_pickle=False)


class ImageCache:
    """Decoded images at one size, looked up by content hash."""

    def __init__(self, root: str | os.PathLike, size: int):
        self.dir = Path(root) / f"v{DECODER_VERSION}-s{size}"
        self.size = size

    def _index(self) -> dict[str, tuple[Path, int]]:
        index: dict[str, tuple[Path, int]] = {}
        if not self.dir.is_dir():
            return index
        for meta_path in sorted(self.dir.glob("*.json")):
            try:
                meta = json.loads(meta_path.read_text())
                keys = meta["keys"]
            except (OSError, ValueError, KeyError, TypeError):
                self._drop(meta_path.with_suffix(""))
                continue
            for row, key in enumerate(keys):
                index[key] = (meta_path.with_suffix(".npy"), row)
        return index

    def _drop(self, stem: Path) -> None:
        for suffix in (".json", ".npy"):
            try:
                stem.with_suffix(suffix).unlink()
            except OSError:
                pass

    def _load_pack(self, npy: Path) -> np.ndarray | None:
        """The pack's array if it matches its metadata, else None (and the pack is deleted)."""
        try:
            meta = json.loads(npy.with_suffix(".json").read_text())
            arr = np.load(npy, allow_pickle=False, mmap_mode="r")  # read from the page cache, never copied whole
            ok = (arr.dtype == np.uint8 and list(arr.shape) == meta["shape"]
                  and arr.shape[1:] == (self.size, self.size, 3) and array_digest(arr) == meta["checksum"])
        except (OSError, ValueError, KeyError, TypeError):
            ok, arr = False, None
        if not ok:
            self._drop(npy.with_suffix(""))
            return None
        return arr

    def lookup(self, keys: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Images for ``keys`` (None = no key). Returns (n, S, S, 3) uint8 and a bool hit mask."""
        out = np.zeros((len(keys), self.size, self.size, 3), dtype=np.uint8)
        hit = np.zeros(len(keys), dtype=bool)
        index = self._index()
        by_pack: dict[Path, list[tuple[int, int]]] = {}
        for i, key in enumerate(keys):
            if key is not None and key in index:
                pack, row = index[key]
                by_pack.setdefault(pack, []).append((i, row))
        for pack, pairs in by_pack.items():
            arr = self._load_pack(pack)
            if arr is None:
                continue
            dst, src = np.array(pairs, dtype=np.int64).T
            out[dst] = arr[src]
            hit[dst] = True
        return out, hit

    def store(self, keys: list[str], images: np.ndarray) -> None:
        """Add decoded images (n, S, S, 3) uint8 under their content keys, as one new pack."""
        if len(keys) == 0:
            return
        assert images.shape == (len(keys), self.size, self.size, 3) and images.dtype == np.uint8
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = self.dir / uuid.uuid4().hex
        images = np.ascontiguousarray(images)
        write_atomic(stem.with_suffix(".npy"), lambda tmp: save_npy(tmp, images))
        meta = {"keys": list(keys), "shape": list(images.shape), "checksum": array_digest(images)}
        write_text_atomic(stem.with_suffix(".json"), json.dumps(meta))
