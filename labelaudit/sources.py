"""Stage 1 — sources: an ImageFolder tree or a manifest becomes one table of samples.

The table has one row per listed file, in listing order: ``path`` as the user wrote it (relative to
the folder root, or as written in the manifest), ``given_label`` as a string and ``file`` (the
absolute path to read). Files that cannot be samples (not an image, missing, no label) go to a
second table of ``path, error`` so nothing silently vanishes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import UsageError


def image_extensions() -> frozenset[str]:
    """Lower-case file endings Pillow can open (``.jpg``, ``.png``, ``.webp``, ``.tif``, ...)."""
    from PIL import Image

    return frozenset(ext.lower() for ext in Image.registered_extensions())


@dataclass(frozen=True)
class Listing:
    """What a source lists. ``samples``: path, given_label, file. ``errors``: path, error."""

    samples: pd.DataFrame
    errors: pd.DataFrame
    root: Path
    source: str  # "folder" or "manifest"
    manifest: Path | None = None  # the manifest file, for a manifest source


def _errors_frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["path", "error"]).astype({"path": str, "error": str})


def list_folder(root: str | os.PathLike) -> Listing:
    """List an ImageFolder tree: ``root/<class>/**/<image>``; the class is the top folder's name.

    Paths are sorted (by their POSIX form) so the listing order, and with it ``sample_id``, does
    not depend on the file system. Hidden files and folders (a leading ``.``) are ignored; files
    directly under ``root`` and files whose ending Pillow does not know are listed as errors.
    """
    root = Path(root)
    if not root.exists():
        raise UsageError(f"{root}: no such folder; pass an image folder (one subfolder per class) or --manifest FILE")
    if not root.is_dir():
        raise UsageError(f"{root}: is a file, not a folder; for a manifest use --manifest {root}")
    exts = image_extensions()
    rows, errors = [], []
    # os.walk with followlinks=False never loops on symlinked folders.
    for dirpath, dirnames, filenames in os.walk(root, onerror=None, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.startswith("."):
                continue
            rel = (rel_dir / name).as_posix()
            if rel_dir == Path("."):
                errors.append((rel, "not in a class folder (images go in ROOT/<class>/...); move it or remove it"))
                continue
            if Path(name).suffix.lower() not in exts:
                errors.append((rel, f"not an image (ending {Path(name).suffix or 'none'!r} is not a format Pillow reads)"))
                continue
            rows.append((rel, rel_dir.parts[0], str(Path(dirpath) / name)))
    rows.sort(key=lambda r: r[0])
    errors.sort()
    samples = pd.DataFrame(rows, columns=["path", "given_label", "file"]).astype(str)
    return Listing(samples, _errors_frame(errors), root, "folder")


_READERS = {
    ".csv": "csv", ".tsv": "tsv", ".txt": "csv",
    ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}
MANIFEST_SUFFIXES = tuple(_READERS)  # file endings read as a manifest


def read_manifest_table(manifest: Path) -> pd.DataFrame:
    """Read a CSV/TSV, Parquet or JSON-lines manifest into a DataFrame of strings (by file ending)."""
    kind = _READERS.get(manifest.suffix.lower())
    if kind is None:
        raise UsageError(f"--manifest {manifest}: unknown format {manifest.suffix!r}; "
                         f"use one of {', '.join(sorted(_READERS))}")
    if not manifest.is_file():
        raise UsageError(f"--manifest {manifest}: no such file")
    try:
        if kind in ("csv", "tsv"):
            # dtype=str keeps labels like "007" as written; utf-8-sig drops a BOM.
            return pd.read_csv(manifest, sep="\t" if kind == "tsv" else ",", dtype=str,
                               keep_default_na=False, encoding="utf-8-sig")
        if kind == "parquet":
            return pd.read_parquet(manifest)
        return pd.read_json(manifest, lines=True, dtype=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # pandas/pyarrow parse errors are ValueErrors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--manifest {manifest}: cannot be read as {kind} ({first})") from exc


def _label_to_str(value) -> str | None:
    """Manifest label → class name; integers stay integers (``3.0`` from a float column → ``"3"``)."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


def list_manifest(manifest: str | os.PathLike, *, root: str | os.PathLike | None = None,
                  path_column: str = "path", label_column: str = "label", dedupe: bool = False) -> Listing:
    """List the samples of a manifest with ``path`` and ``label`` columns (names configurable).

    Relative paths resolve against ``root`` (default: the manifest's own folder). Rows with an empty
    label or a missing file are listed as errors, not dropped silently. A file listed twice (after
    resolving the path) is a UsageError naming the rows, unless ``dedupe``: then the first row wins
    and the others go to the errors.
    """
    manifest = Path(manifest)
    table = read_manifest_table(manifest)
    for option, column in (("--path-column", path_column), ("--label-column", label_column)):
        if column not in table.columns:
            have = ", ".join(map(str, table.columns)) or "none"
            raise UsageError(f"--manifest {manifest}: no column {column!r} (columns: {have}); "
                             f"name the right one with {option}")
    root = Path(root) if root is not None else manifest.parent
    if not root.is_dir():
        raise UsageError(f"--root {root}: no such folder")
    rows, errors = [], []
    first_row: dict[str, int] = {}
    for row_no, (raw_path, raw_label) in enumerate(zip(table[path_column].tolist(), table[label_column].tolist()),
                                                   start=1):
        path = "" if raw_path is None or raw_path != raw_path else str(raw_path)
        if not path.strip():
            errors.append((path, "empty path in the manifest; fill it in or remove the row"))
            continue
        label = _label_to_str(raw_label)
        if label is None:
            errors.append((path, "empty label in the manifest; fill it in or remove the row"))
            continue
        file = Path(path) if os.path.isabs(path) else root / path
        key = os.path.normpath(os.path.abspath(file))
        if key in first_row:
            if not dedupe:
                raise UsageError(f"--manifest {manifest}: {path!r} is listed more than once (rows {first_row[key]} "
                                 f"and {row_no}); remove the duplicates, or pass --dedupe to keep the first row")
            errors.append((path, f"duplicate of manifest row {first_row[key]}; left out by --dedupe"))
            continue
        first_row[key] = row_no
        rows.append((path, label, str(file)))
    samples = pd.DataFrame(rows, columns=["path", "given_label", "file"]).astype(str)
    return Listing(samples, _errors_frame(errors), root, "manifest", manifest)
