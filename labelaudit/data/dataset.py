"""Stage 2 — from a listing to decoded images: hash every file, take what the cache holds, decode
the rest in worker processes, store them, and collect the failures with their reasons."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..progress import Progress
from .cache import ImageCache
from .decode import decode_files, hash_files
from ..errors import DataError, UsageError
from .sources import Listing


@dataclass
class Dataset:
    """Readable samples with their pixels. ``images`` (N, S, S, 3) uint8, ``labels`` (N,) int64
    indices into ``classes``; ``samples`` has sample_id, path, given_label in the same order."""

    samples: pd.DataFrame
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    errors: pd.DataFrame
    stats: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # the file read for each sample (as listed: absolute or relative)


class _Counter:
    """Turns "k more done" callbacks into ``progress(stage, done, total, info)`` calls."""

    def __init__(self, progress: Progress | None, stage: str, total: int, info: dict | None = None):
        self.progress, self.stage, self.total, self.done = progress, stage, total, 0
        self.info = info or {}

    def __call__(self, k: int) -> None:
        self.done += k
        if self.progress is not None:
            self.progress(self.stage, self.done, self.total, self.info)


CACHE_FLUSH = 2048  # decoded images per cache pack while decoding


class _Keep:
    """Counts decoded chunks for the progress bar and stores them in the cache every
    :data:`CACHE_FLUSH` images, so an interrupted decode keeps what it finished (packs are written
    atomically)."""

    def __init__(self, progress: Progress | None, total: int, cache: ImageCache | None, keys: list[str],
                 n_cached: int = 0):
        # the bar counts the images to decode; the ones the cache already holds are named beside it
        self.counter = _Counter(progress, "decode", total, {"n_cached": n_cached} if n_cached else None)
        self.cache, self.keys, self.flush = cache, keys, CACHE_FLUSH
        self.pending_keys: list[str] = []
        self.pending: list[np.ndarray] = []

    def __call__(self, a: int, b: int, images: np.ndarray, errors: list) -> None:
        if self.cache is not None:
            ok = [i for i, e in enumerate(errors) if e is None]
            self.pending_keys += [self.keys[a + i] for i in ok]
            self.pending.append(images[ok])
            if len(self.pending_keys) >= self.flush:
                self.store()
        self.counter(b - a)

    def store(self) -> None:
        if self.cache is not None and self.pending_keys:
            self.cache.store(self.pending_keys, np.concatenate(self.pending))
        self.pending_keys, self.pending = [], []


def error_digest(errors: pd.DataFrame, top: int = 3) -> str:
    """'most often: <reason> (k, e.g. <path>); ...' — the commonest reasons, for one-line errors.

    Reasons are cut before their details ("not an image (Pillow ...)" → "not an image") so that the
    same cause with different details counts once; errors.parquet keeps the full text.
    """
    if len(errors) == 0:
        return "no files listed"
    short = errors["error"].str.split(r" \(|; ", n=1, regex=True).str[0]
    counts = errors.assign(reason=short).groupby("reason", sort=False)["path"].agg(["size", "first"]) \
        .sort_values("size", ascending=False, kind="stable")
    return "most often: " + "; ".join(f"{reason} ({row['size']}, e.g. {row['first']})"
                                      for reason, row in counts.head(top).iterrows())


def sort_classes(names) -> list[str]:
    """Class order: numeric when every name is an integer ("2" before "10"), else lexicographic."""
    names = set(names)
    try:
        return sorted(names, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(names)


@dataclass
class Decoded:
    """:func:`decode_cached`'s result: pixels, one error (or None) per file, and counts and timings."""

    images: np.ndarray  # (n, S, S, 3) uint8; zeros where the file failed
    errors: list[str | None]
    stats: dict


def decode_cached(files: list[str], *, image_size: int, workers: int, cache_dir: Path | None,
                  progress: Progress | None = None) -> Decoded:
    """Hash every file, take what the cache holds, decode the rest in ``workers`` processes (storing
    them in the cache as they finish). Failures are reasons in ``errors``, never exceptions."""
    n = len(files)
    t0 = time.perf_counter()
    hashed = hash_files(files, threads=max(2, workers), on_done=_Counter(progress, "hash", n))
    keys = [h for h, _ in hashed]
    errors: list[str | None] = [e for _, e in hashed]
    t_hash = time.perf_counter() - t0

    cache = ImageCache(cache_dir, image_size) if cache_dir is not None else None
    if cache is not None:
        images, hit = cache.lookup(keys)
    else:
        images, hit = np.zeros((n, image_size, image_size, 3), dtype=np.uint8), np.zeros(n, dtype=bool)
    todo = np.flatnonzero(~hit & np.array([k is not None for k in keys], dtype=bool))
    t1 = time.perf_counter()
    if len(todo):
        keep = _Keep(progress, len(todo), cache, [keys[i] for i in todo], n_cached=int(hit.sum()))
        # decoded straight into their rows of `images` (a failed file's row stays zeros)
        _, dec_errors = decode_files([files[i] for i in todo], image_size, workers=workers, on_done=keep,
                                     out=images, rows=todo)
        keep.store()
        for i, err in zip(todo, dec_errors):
            if err is not None:
                errors[i] = err
    elif progress is not None:
        progress("decode", n, n, {"cached": True})
    stats = {"n_cached": int(hit.sum()), "n_decoded": int(len(todo)), "hash_s": t_hash,
             "decode_s": time.perf_counter() - t1}
    return Decoded(images, errors, stats)


def prefill_cache(listing: Listing, *, image_size: int, workers: int, cache_dir: Path, part: int, parts: int,
                  progress: Progress | None = None) -> None:
    """Decode share ``part`` of ``parts`` of the listed files (every parts-th, from the part-th) into
    the cache: under torchrun every rank decodes its share, and after a barrier each reads the whole
    dataset from the cache (:func:`load_dataset`). Failures are left for load_dataset to report."""
    files = listing.samples["file"].tolist()[part::parts]
    decode_cached(files, image_size=image_size, workers=workers, cache_dir=cache_dir, progress=progress)


def load_dataset(listing: Listing, *, image_size: int, workers: int, cache_dir: Path | None,
                 progress: Progress | None = None) -> Dataset:
    """Decode (or fetch from the cache) every listed file at ``image_size``; raise DataError when
    nothing readable is left or fewer than two classes remain."""
    n = len(listing.samples)
    decoded = decode_cached(listing.samples["file"].tolist(), image_size=image_size, workers=workers,
                            cache_dir=cache_dir, progress=progress)
    images, errors = decoded.images, decoded.errors
    good = np.array([e is None for e in errors], dtype=bool)
    bad_rows = [(p, e) for p, e, g in zip(listing.samples["path"], errors, good) if not g]
    all_errors = pd.concat([listing.errors, pd.DataFrame(bad_rows, columns=["path", "error"])],
                           ignore_index=True).astype({"path": str, "error": str})
    samples = listing.samples.loc[good, ["path", "given_label"]].reset_index(drop=True)
    if len(samples) == 0:
        where = f"{listing.root}" if listing.source == "folder" else "the manifest"
        raise DataError(f"{where}: no readable images; {len(all_errors)} file(s) could not be used, "
                        f"{error_digest(all_errors)}", errors=all_errors)
    classes = sort_classes(samples["given_label"])
    if len(classes) < 2:
        raise DataError(f"only one class ({classes[0]!r}) among {len(samples)} readable images: a label "
                        "audit needs at least two classes")
    samples.insert(0, "sample_id", np.arange(len(samples), dtype=np.int64))
    index = {c: k for k, c in enumerate(classes)}
    labels = samples["given_label"].map(index).to_numpy(dtype=np.int64)
    stats = {"n_listed": n + len(listing.errors), **decoded.stats}
    return Dataset(samples, images if good.all() else images[good], labels, classes, all_errors, stats,
                   files=listing.samples.loc[good, "file"].astype(str).tolist())


def parse_max_errors(value: str | int) -> tuple[float, bool]:
    """``"20"`` → (20, False): at most 20 files; ``"5%"`` → (0.05, True): at most 5% of the listed files."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100.0
            if 0.0 <= share <= 1.0:
                return share, True
        else:
            count = int(text)
            if count >= 0:
                return float(count), False
    except ValueError:
        pass
    raise UsageError(f"--max-errors {value!r}: expected a count (20) or a share of the files (5%)")


def fingerprint(samples: pd.DataFrame) -> str:
    """SHA-256 of the sample listing (path and given label of every row, in order): run.json's data
    fingerprint and part of a checkpoint's key."""
    h = hashlib.sha256()
    for path, label in zip(samples["path"], samples["given_label"]):
        h.update(f"{path}\t{label}\n".encode())
    return h.hexdigest()


def check_max_errors(limit: str | None, errors: pd.DataFrame, n_listed: int) -> None:
    """DataError when more files failed than ``--max-errors`` allows."""
    if limit is None:
        return
    bound, is_share = parse_max_errors(limit)
    allowed = bound * n_listed if is_share else bound
    if len(errors) > allowed:
        raise DataError(f"--max-errors {limit}: {len(errors)} of {n_listed} listed file(s) failed, more than "
                        f"allowed, {error_digest(errors)}. Fix or remove them (errors.parquet lists every "
                        "one), or raise --max-errors",
                        errors=errors)
