"""``labelaudit export``: a cleaned manifest, or a cleaned ImageFolder tree, from an audit folder.

Modes (the rows the output holds):

- ``drop``: every sample except the label issues.
- ``relabel``: label issues whose ``predicted_confidence`` is at least ``min_confidence`` take the
  predicted label; the other label issues are left out (a label known to be wrong is not kept).
- ``weight``: every sample with its given label and ``weight`` (the clean probability), for a
  weighted training run.
- ``folder``: the ``drop`` rows (or the ``relabel`` rows when ``min_confidence`` is given) laid out
  as ``OUT/<label>/<file>``, as symbolic links to the original images, or copies.
- ``verify``: not a cleaned manifest but a worksheet for a person: a seeded random draw of
  ``per_class`` samples of every given label (:func:`verify_rows`), with an empty ``label`` column to
  fill in with each image's true class. Filled in, it is a trusted set: ``labelaudit scan DATA
  --trusted OUT`` checks and recalibrates the audit on it (docs/trusted.md).

Samples a person verified (``labelaudit review`` answers, a ``--trusted`` set) take the verified
label and are kept in every mode; those answered as images of no class are left out.

Every manifest has ``path, label, weight, original_label, changed``; ``path`` is absolute, so the
file can be read from anywhere; ``labelaudit scan --manifest OUT --root ROOT`` reads it back (ROOT the
scanned root: a manifest's paths must lie inside its root unless ``--allow-outside-root``). The input data is
never modified: nothing is written outside ``out``, and ``out`` may not be the scan's own manifest
or lie inside its image folder.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import write_atomic
from .audit.read import Audit
from .errors import DataError, UsageError

CLEAN_MODES = ("drop", "relabel", "weight", "folder")  # the modes cleaned_rows serves
EXPORT_MODES = CLEAN_MODES + ("verify",)
DEFAULT_PER_CLASS = 10  # --mode verify: 10 a class took CIFAR-10 5% noise's rate error 0.130 → 0.010 (docs/trusted.md)
EXPORT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DEFAULT_MIN_CONFIDENCE = 0.5


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    mode: str
    n_rows: int  # samples written
    n_dropped: int
    n_relabelled: int


def cleaned_rows(audit: Audit, mode: str, *, min_confidence: float | None = None) -> pd.DataFrame:
    """The rows of a cleaned manifest: path (absolute), label, weight, original_label, changed."""
    if mode not in CLEAN_MODES:
        raise UsageError(f"--mode {mode!r}: unknown; choose one of {', '.join(EXPORT_MODES)}"
                         if mode not in EXPORT_MODES else f"--mode {mode!r} writes no cleaned rows: use verify_rows")
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise UsageError(f"--min-confidence {min_confidence!r}: expected a probability from 0 to 1")
    s = audit.samples
    issue = s["is_label_issue"].to_numpy(dtype=bool)
    label = s["given_label"].to_numpy(dtype=object).copy()
    keep = np.ones(len(s), dtype=bool)
    if mode == "relabel" or (mode == "folder" and min_confidence is not None):
        threshold = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
        confident = issue & (s["predicted_confidence"].to_numpy() >= threshold) \
            & (s["predicted_label"].to_numpy(dtype=object) != label)
        label[confident] = s["predicted_label"].to_numpy(dtype=object)[confident]
        keep = ~issue | confident
    elif mode in ("drop", "folder"):
        keep = ~issue
    weight = s["weight"].to_numpy(dtype=np.float64).copy()
    if "verified_label" in s.columns:  # verified by a person (review, --trusted): their label, kept
        verified = s["verified_label"].notna().to_numpy() & (s["verified_label"].astype(str) != "").to_numpy()
        label[verified] = s["verified_label"].to_numpy(dtype=object)[verified]
        weight[verified] = 1.0  # the label is now the verified one
        keep |= verified
    if "verified_no_class" in s.columns:  # an image of no class: not a valid example of any
        keep &= ~s["verified_no_class"].to_numpy(dtype=bool)
    rows = pd.DataFrame({
        "path": audit.files().to_numpy(),
        "label": label.astype(str),
        "weight": weight,
        "original_label": s["given_label"].astype(str).to_numpy(),
    })
    rows["changed"] = rows["label"] != rows["original_label"]
    return rows[keep].reset_index(drop=True)


def verify_rows(audit: Audit, per_class: int = DEFAULT_PER_CLASS, seed: int = 0) -> pd.DataFrame:
    """A worksheet of samples to verify by hand: ``per_class`` samples of every given label (all of a
    smaller class), drawn at random with ``seed`` among the samples the audit has not had verified
    yet (``verified_label``, from an earlier ``--trusted``), in random order. Columns: ``path``
    (absolute), ``label`` (empty: the true class, to fill in) and ``given_label``.

    The draw depends only on the given label, never on the score: docs/trusted.md's calibration
    assumes that which samples were verified does not depend on whether their label is wrong, and a
    draw of the top suspects would need the score to be modelled as well. Equal numbers per class
    make sure every class has verified samples (``train --meta-reweight`` needs that).
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise UsageError(f"--per-class {per_class!r}: expected a whole number of samples, 1 or more")
    s = audit.samples
    files = audit.files().to_numpy()
    open_rows = np.ones(len(s), dtype=bool)
    if "verified_label" in s.columns:  # verified in an earlier round: not asked again
        open_rows = s["verified_label"].isna().to_numpy() | (s["verified_label"].astype(str) == "").to_numpy()
    rng = np.random.default_rng(seed)
    picks = []
    for _, rows in s[open_rows].groupby("given_label", sort=True):
        idx = rows.index.to_numpy()
        picks.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    if not picks:
        raise UsageError("--mode verify: every sample of the audit has been verified already; nothing to draw")
    chosen = rng.permutation(np.concatenate(picks))  # mixed classes: a worksheet in class blocks invites routine
    return pd.DataFrame({"path": files[chosen], "label": "", "given_label": s["given_label"].to_numpy()[chosen]})


def _format_of(out: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in set(EXPORT_FORMATS.values()):
            raise UsageError(f"--format {fmt!r}: unknown; choose csv, parquet or jsonl")
        return fmt
    try:
        return EXPORT_FORMATS[out.suffix.lower()]
    except KeyError:
        raise UsageError(f"--out {out}: cannot tell the format from the ending {out.suffix or '(none)'!r}; "
                         f"name it .csv, .parquet or .jsonl, or pass --format") from None


def _guard_inputs(audit: Audit, out: Path) -> None:
    """Refuse an ``out`` that would overwrite or write into the scan's input."""
    data = audit.run.data
    target = out.resolve()
    if data.manifest and target == Path(data.manifest).resolve():
        raise UsageError(f"--out {out}: is the scan's own manifest; write the cleaned one to a new file")
    root = Path(data.root).resolve() if data.root else None
    if root is not None and data.source == "folder" and (target == root or root in target.parents):
        raise UsageError(f"--out {out}: lies inside the scanned image folder {root}; choose a folder outside it")


def write_manifest(rows: pd.DataFrame, out: Path, fmt: str) -> None:
    writers = {
        "csv": lambda tmp: rows.to_csv(tmp, index=False),
        "parquet": lambda tmp: rows.to_parquet(tmp, index=False),
        "jsonl": lambda tmp: rows.to_json(tmp, orient="records", lines=True, force_ascii=False),
    }
    write_atomic(out, writers[fmt])


def _safe_part(name: str) -> str:
    """A label as one folder name: no separators, not '.' or '..'."""
    cleaned = name.replace("/", "_").replace("\\", "_").replace(os.sep, "_").strip()
    return "_" if cleaned in ("", ".", "..") else cleaned


def write_folder(rows: pd.DataFrame, out: Path, *, copy: bool = False) -> None:
    """``out/<label>/<file name>`` for every row: a symbolic link to the image (or a copy)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: exists and is not an empty folder; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    used: set[tuple[str, str]] = set()
    for i, (path, label) in enumerate(zip(rows["path"], rows["label"])):
        src = Path(path)
        folder = _safe_part(label)
        name = src.name
        if (folder, name) in used:  # two images with one name in one class: keep both
            name = f"{src.stem}__{i}{src.suffix}"
        used.add((folder, name))
        dest = out / folder / name
        dest.parent.mkdir(exist_ok=True)
        try:
            if copy:
                shutil.copy2(src, dest)
            else:
                os.symlink(src.resolve(), dest)
        except OSError as exc:
            raise DataError(f"{src}: cannot {'copy' if copy else 'link'} it into {out} "
                            f"({exc.strerror or exc}); {i} of {len(rows)} files were written") from None


def export(audit: Audit, out: str | os.PathLike, *, mode: str = "drop", min_confidence: float | None = None,
           fmt: str | None = None, copy: bool = False, per_class: int = DEFAULT_PER_CLASS,
           seed: int = 0) -> ExportSummary:
    """Write a cleaned manifest (or, for ``mode="folder"``, a tree; for ``mode="verify"``, a worksheet
    of samples to verify) to ``out``; see the module docstring."""
    out = Path(out)
    if mode == "verify":
        if min_confidence is not None or copy:
            raise UsageError("--mode verify draws samples to check by hand; --min-confidence and --copy do not apply")
        rows = verify_rows(audit, per_class, seed)
        _guard_inputs(audit, out)
        write_manifest(rows, out, _format_of(out, fmt))
        return ExportSummary(out, mode, len(rows), len(audit.samples) - len(rows), 0)
    rows = cleaned_rows(audit, mode, min_confidence=min_confidence)
    _guard_inputs(audit, out)
    if mode == "folder":
        if fmt is not None:
            raise UsageError("--format goes with a manifest; --mode folder writes a folder tree")
        write_folder(rows, out, copy=copy)
    else:
        if copy:
            raise UsageError("--copy goes with --mode folder")
        write_manifest(rows, out, _format_of(out, fmt))
    return ExportSummary(out, mode, len(rows), len(audit.samples) - len(rows), int(rows["changed"].sum()))
