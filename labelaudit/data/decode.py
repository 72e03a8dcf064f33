"""Stage 2a — decode: any image file Pillow reads becomes an RGB uint8 array (S, S, 3).

Kept free of torch so decode worker processes start fast. The work is split in two so a warm
cache never decodes: :func:`content_hash` (read + hash, cheap, run for every file) and
:func:`decode_image` (run only for files the cache does not hold).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DecodeError

DECODER_VERSION = "1"  # bump when decoded pixels change, so old cache entries are not reused

_HASH_CHUNK = 1 << 20


_READ_ERRORS = {
    FileNotFoundError: "file not found (it may have been moved or deleted after listing)",
    PermissionError: "permission denied; make the file readable (chmod +r) or remove it",
    IsADirectoryError: "is a folder, not an image file",
}


def _read_error(exc: OSError) -> DecodeError:
    """A file-access failure as a one-line DecodeError (the same words from hashing and decoding)."""
    for kind, message in _READ_ERRORS.items():
        if isinstance(exc, kind):
            return DecodeError(message)
    return DecodeError(f"cannot read the file ({exc.strerror or exc})")


def content_hash(file: str) -> str:
    """BLAKE2b-128 of the file's bytes, hex. Raises DecodeError with a one-line reason."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(file, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise _read_error(exc) from None
    return h.hexdigest()


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB. Alpha is dropped (as torchvision's loader does); 16/32-bit and float
    images are scaled to 0..255 rather than clipped, so a 16-bit TIFF does not turn white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16"):
            a = a / 257.0  # 0..65535 → 0..255
        else:
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # avoids Pillow's palette-transparency warning
    return im.convert("RGB") if im.mode != "RGB" else im


_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def _size(file: str) -> int | None:
    try:
        return os.path.getsize(file)
    except OSError:
        return None


def _signature(file: str) -> str | None:
    """The image format a file's first bytes announce (WebP: RIFF....WEBP), or None."""
    try:
        with open(file, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def decode_image(file: str, size: int) -> np.ndarray:
    """Decode ``file`` to an RGB uint8 array of shape (size, size, 3).

    JPEGs are decoded through ``Image.draft`` at the smallest DCT scale that is still at least
    ``size`` on both sides, so a 4000×3000 photo never exists in memory at full size. EXIF
    orientation is applied; GIF/WebP/TIFF animations use their first frame. The image is resized to
    size×size (aspect ratio not kept: the whole image stays visible to the proxy) with Pillow's
    antialiased bilinear filter. Raises DecodeError with a reason a person can act on.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as im:
                if im.format == "JPEG":
                    im.draft("RGB", (size, size))
                im.seek(0)
                im.load()
                im = ImageOps.exif_transpose(im) or im
                if im.width < 1 or im.height < 1:
                    raise DecodeError(f"image has no pixels ({im.width}×{im.height})")
                im = _to_rgb(im)
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR, reducing_gap=3.0)
                arr = np.asarray(im, dtype=np.uint8)
    except DecodeError:
        raise
    except tuple(_READ_ERRORS) as exc:
        raise _read_error(exc) from None
    except UnidentifiedImageError:
        if _size(file) == 0:
            raise DecodeError("empty file (0 bytes); copy it again or remove it") from None
        kind = _signature(file)
        if kind:
            raise DecodeError(f"corrupt {kind} file: it starts like one, but its header cannot be read "
                              "(a damaged copy or a broken checksum); replace or remove it") from None
        raise DecodeError("not an image (Pillow cannot identify the file's format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DecodeError(f"image too large, refused as a possible decompression bomb (over Pillow's limit of "
                          f"{Image.MAX_IMAGE_PIXELS:,} pixels); resize it or remove it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc).strip() or type(exc).__name__
        if "truncated" in msg.lower():
            raise DecodeError("truncated file: the image data ends early (an interrupted download or copy?); "
                              "copy it again or remove it") from None
        raise DecodeError(f"cannot decode the image ({msg.splitlines()[0]})") from None
    if arr.shape != (size, size, 3):
        raise DecodeError(f"decoded to an unexpected shape {arr.shape}")
    return arr


# --- batched work for worker processes -------------------------------------------------------

def _hash_one(file: str) -> tuple[str | None, str | None]:
    try:
        return content_hash(file), None
    except DecodeError as exc:
        return None, str(exc)


def _decode_chunk(files: Sequence[str], size: int) -> tuple[np.ndarray, list[str | None]]:
    """Decode a chunk; returns (n, S, S, 3) uint8 (zeros where failed) and an error per file."""
    out = np.zeros((len(files), size, size, 3), dtype=np.uint8)
    errors: list[str | None] = []
    for i, file in enumerate(files):
        try:
            out[i] = decode_image(file, size)
            errors.append(None)
        except DecodeError as exc:
            errors.append(str(exc))
    return out, errors


def hash_files(files: Sequence[str], *, threads: int,
               on_done: Callable[[int], None] | None = None) -> list[tuple[str | None, str | None]]:
    """Content hashes (or errors) of many files, with ``threads`` I/O threads (hashlib drops the GIL)."""
    results: list[tuple[str | None, str | None]] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for i, res in enumerate(pool.map(_hash_one, files, chunksize=64)):
            results.append(res)
            if on_done is not None and (i + 1) % 256 == 0:
                on_done(256)
    if on_done is not None and len(files) % 256:
        on_done(len(files) % 256)
    return results


def _chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def decode_files(files: Sequence[str], size: int, *, workers: int,
                 on_done: Callable[[int, int, np.ndarray, list], None] | None = None,
                 out: np.ndarray | None = None, rows: np.ndarray | None = None
                 ) -> tuple[np.ndarray, list[str | None]]:
    """Decode many files in ``workers`` processes (0 or 1: in this process).

    Returns (n, S, S, 3) uint8 and one error string (or None) per file, in input order; with ``out``
    (an (M, S, S, 3) uint8 array, zeros where nothing is decoded) file i goes to ``out[rows[i]]``
    and ``out`` is returned: the caller's array is filled in place, never held twice.
    ``on_done(a, b, images, errors)`` is called as each chunk ``files[a:b]`` is done (in order),
    so a caller can keep finished work (the cache does) before an interruption.
    """
    n = len(files)
    if out is None:
        out = np.zeros((n, size, size, 3), dtype=np.uint8)
    if rows is None:
        rows = np.arange(n)
    errors: list[str | None] = [None] * n
    # Small chunks keep every worker busy to the end; 64 JPEGs is a few ms of work each.
    chunk = max(8, min(256, n // max(1, workers * 8) or 8))
    spans = list(_chunks(n, chunk))

    def collect(pool: Executor | None) -> None:
        if pool is None:
            results = (_decode_chunk(files[a:b], size) for a, b in spans)
        else:
            results = pool.map(_decode_chunk, [files[a:b] for a, b in spans], [size] * len(spans))
        for (a, b), (arr, errs) in zip(spans, results):
            out[rows[a:b]] = arr
            errors[a:b] = errs
            if on_done is not None:
                on_done(a, b, arr, errs)

    if workers <= 1 or n < 2 * chunk:
        collect(None)
    else:
        import multiprocessing as mp
        import sys

        # fork on Linux: workers start without re-importing the caller's script (spawn and
        # forkserver do, which breaks scripts without a __main__ guard) and run only Pillow and
        # NumPy, never torch, so the parent's threads are no hazard. Elsewhere fork is unsafe or
        # missing, and spawn applies (like torch's DataLoader: guard your script's entry point).
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        with warnings.catch_warnings():  # Python ≥ 3.12 warns on fork in a threaded process
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method)) as pool:
                collect(pool)
    return out, errors


def default_workers() -> int:
    """Decode processes: one per core the process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))
