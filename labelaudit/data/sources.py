"""Stage 1 — sources: an ImageFolder tree or a manifest becomes one table of samples.

The table has one row per listed file, in listing order: ``path`` as the user wrote it (relative to
the folder root, or as written in the manifest), ``given_label`` as a string and ``file`` (the
absolute path to read). Files that cannot be samples (not an image, missing, no label) go to a
second table of ``path, error`` so nothing silently vanishes.
"""
from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import UsageError


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


def utf8_or_none(text: str) -> str | None:
    """``text`` if it is valid UTF-8 (a name the outputs can hold), else None.

    POSIX file names are bytes; Python decodes undecodable bytes to lone surrogates, which no
    Parquet, CSV or JSON file can store and which no output row could name exactly.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


def shown_name(text: str) -> str:
    """A file name for an error row: undecodable bytes as ``\\xNN``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


NOT_UTF8 = ("file name is not valid UTF-8 (undecodable bytes shown as \\xNN), so no output could name it; "
            "rename it to a UTF-8 name (e.g. with convmv)")


def list_folder(root: str | os.PathLike) -> Listing:
    """List an ImageFolder tree: ``root/<class>/**/<image>``; the class is the top folder's name.

    Paths are sorted (by their POSIX form) so the listing order, and with it ``sample_id``, does
    not depend on the file system. Hidden files and folders (a leading ``.``) are ignored; files
    directly under ``root`` and files whose ending Pillow does not know are listed as errors.
    Symbolic links to folders are followed once: a link back to a folder already listed (a loop,
    or a second way to the same images) is listed as an error instead of walked again. File names
    that are not valid UTF-8 are listed as errors (:data:`NOT_UTF8`).
    """
    root = Path(root)
    if not root.exists():
        raise UsageError(f"{root}: no such folder; pass an image folder (one subfolder per class) or --manifest FILE")
    if not root.is_dir():
        raise UsageError(f"{root}: is a file, not a folder; for a manifest use --manifest {root}")
    exts = image_extensions()
    rows, errors = [], []
    seen: dict[tuple[int, int], str] = {}  # (device, inode) of every folder walked → its listed path

    def visit(dirpath: str, rel_dir: Path) -> bool:
        """Whether to walk ``dirpath`` (False, with an error row, when its folder was walked already)."""
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            errors.append((shown_name(rel_dir.as_posix()), f"folder cannot be read ({exc.strerror}); skipped"))
            return False
        key = (st.st_dev, st.st_ino)
        if key in seen:
            errors.append((shown_name(rel_dir.as_posix()),
                           f"symbolic link to a folder already listed ({seen[key] or 'the root'}); "
                           "skipped so no image is listed twice and link loops end"))
            return False
        seen[key] = rel_dir.as_posix() if rel_dir != Path(".") else ""
        return True

    visit(str(root), Path("."))
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and visit(os.path.join(dirpath, d), rel_dir / d))
        for name in filenames:
            if name.startswith("."):
                continue
            rel = (rel_dir / name).as_posix()
            if rel_dir == Path("."):
                errors.append((shown_name(rel), "not in a class folder (images go in ROOT/<class>/...); "
                                                "move it or remove it"))
                continue
            if Path(name).suffix.lower() not in exts:
                errors.append((shown_name(rel), f"not an image (ending {Path(name).suffix or 'none'!r} "
                                                "is not a format Pillow reads)"))
                continue
            if utf8_or_none(rel) is None:
                errors.append((shown_name(rel), NOT_UTF8))
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


def read_manifest_table(manifest: Path, option: str = "--manifest") -> pd.DataFrame:
    """Read a CSV/TSV, Parquet or JSON-lines manifest into a DataFrame of strings (by file ending).
    ``option`` names the file in error messages (``--manifest``, ``--trusted``)."""
    kind = _READERS.get(manifest.suffix.lower())
    if kind is None:
        raise UsageError(f"{option} {manifest}: unknown format {manifest.suffix!r}; "
                         f"use one of {', '.join(sorted(_READERS))}")
    if not manifest.is_file():
        raise UsageError(f"{option} {manifest}: no such file")
    try:
        if kind in ("csv", "tsv"):
            # dtype=str keeps labels like "007" as written; utf-8-sig drops a BOM.
            return pd.read_csv(manifest, sep="\t" if kind == "tsv" else ",", dtype=str,
                               keep_default_na=False, encoding="utf-8-sig")
        if kind == "parquet":
            return pd.read_parquet(manifest)
        return pd.read_json(manifest, lines=True, dtype=False)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option} {manifest}: not UTF-8 text (byte {exc.start} cannot be decoded); "
                         "save it as UTF-8 and try again") from exc
    except (ValueError, OSError) as exc:  # pandas/pyarrow parse errors are ValueErrors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{option} {manifest}: cannot be read as {kind} ({first})") from exc


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
                  path_column: str = "path", label_column: str = "label", dedupe: bool = False,
                  allow_outside_root: bool = False, option: str = "--manifest",
                  known_files: Collection[str] = ()) -> Listing:
    """List the samples of a manifest with ``path`` and ``label`` columns (names configurable).

    Relative paths resolve against ``root`` (default: the manifest's own folder). A path that lands
    outside ``root`` (through ``..`` or as an absolute path elsewhere) is a UsageError unless
    ``allow_outside_root``: a manifest from elsewhere cannot make the scan read, and name in its
    outputs, files the user did not point it at; ``known_files`` (normalised absolute paths) are files
    the user did point it at (a trusted set may name the main data's images), allowed anywhere. Rows with an empty
    label or a missing file are listed as errors, not dropped silently. A file listed twice (after
    resolving the path) is a UsageError naming the rows, unless ``dedupe``: then the first row wins
    and the others go to the errors.
    """
    manifest = Path(manifest)
    table = read_manifest_table(manifest, option)
    for flag, column in (("--path-column", path_column), ("--label-column", label_column)):
        if column not in table.columns:
            have = ", ".join(c if c.isprintable() else repr(c) for c in map(str, table.columns)) or "none"
            raise UsageError(f"{option} {manifest}: no column {column!r} (columns: {have}); "
                             f"name the right one with {flag}")
    root = Path(root) if root is not None else manifest.parent
    if not root.is_dir():
        raise UsageError(f"--root {root}: no such folder")
    rows, errors = [], []
    outside: list[tuple[int, str]] = []
    inside = os.path.join(os.path.normpath(os.path.abspath(root)), "")
    first_row: dict[str, int] = {}
    for row_no, (raw_path, raw_label) in enumerate(zip(table[path_column].tolist(), table[label_column].tolist()),
                                                   start=1):
        path = "" if raw_path is None or raw_path != raw_path else str(raw_path)
        if not path.strip():
            errors.append((path, "empty path in the manifest; fill it in or remove the row"))
            continue
        if "\x00" in path:
            errors.append((path.replace("\x00", "\\0"), "path contains a NUL character, which no file name can; "
                                                          "fix the manifest row"))
            continue
        label = _label_to_str(raw_label)
        if label is None:
            errors.append((path, "empty label in the manifest; fill it in or remove the row"))
            continue
        file = Path(path) if os.path.isabs(path) else root / path
        key = os.path.normpath(os.path.abspath(file))
        if not allow_outside_root and not key.startswith(inside) and key not in known_files:
            outside.append((row_no, path))
            continue
        if key in first_row:
            if not dedupe:
                raise UsageError(f"{option} {manifest}: {path!r} is listed more than once (rows {first_row[key]} "
                                 f"and {row_no}); remove the duplicates, or pass --dedupe to keep the first row")
            errors.append((path, f"duplicate of manifest row {first_row[key]}; left out by --dedupe"))
            continue
        first_row[key] = row_no
        rows.append((path, label, str(file)))
    if outside:
        row_no, path = outside[0]
        fix = "pass --root a folder that holds every image" if option == "--manifest" else \
            "move the file next to its images"
        raise UsageError(f"{option} {manifest}: {len(outside)} path(s) lie outside the root {root}"
                         f"{' and are not images of the data' if known_files else ''} (first: row {row_no}, "
                         f"{path!r}); {fix}, or --allow-outside-root if you trust this manifest")
    samples = pd.DataFrame(rows, columns=["path", "given_label", "file"]).astype(str)
    return Listing(samples, _errors_frame(errors), root, "manifest", manifest)


def list_data(data, manifest=None, root=None, *, path_column: str = "path", label_column: str = "label",
              dedupe: bool = False, allow_outside_root: bool = False) -> Listing:
    """List DATA (a folder, or a manifest given as DATA) or ``manifest`` (with its column names)."""
    if manifest is None and data is not None and Path(data).is_file() \
            and Path(data).suffix.lower() in MANIFEST_SUFFIXES:
        manifest, data = data, None  # `labelaudit scan labels.csv` means the manifest
    if manifest is not None:
        if data is not None:
            raise UsageError("give either DATA (an image folder) or --manifest FILE, not both")
        return list_manifest(manifest, root=root, path_column=path_column, label_column=label_column,
                             dedupe=dedupe, allow_outside_root=allow_outside_root)
    if data is None:
        raise UsageError("nothing to scan: pass an image folder (DATA) or --manifest FILE")
    if root is not None:
        raise UsageError("--root goes with --manifest; for a folder, DATA is the root")
    return list_folder(data)
