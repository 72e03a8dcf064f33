"""The review without a browser: a worksheet of the design's draw to fill in elsewhere, and the
verified estimates its answers give.

``write_worksheet`` writes the draw (noise/sampling.py) as CSV: ``path`` (absolute), ``given_label``, an empty
``label``, and the design's ``sample_id``, ``stratum``, ``inclusion`` and ``draw`` (a digest of the
audit's strata: answers to the draw of another scan are refused). A person (or a labelling
tool) fills ``label`` with the class the image shows, or ``none`` for an image of no class, and
leaves blank the rows not checked. ``read_answers`` checks the filled file against the audit and
``review_estimates`` turns it into the stratified estimates (noise/stratified.py); ``apply_answers``
applies them to the audit (apply.py) and keeps them beside it as review.json.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_text_atomic
from ..audit.read import Audit
from ..errors import DataError, UsageError
from .apply import NONE, Applied, apply_review, class_index, outcomes, scan_audit
from ..noise.sampling import STRATUM_EDGES, Design, draw, strata
from ..noise.stratified import LEVEL, ReviewEstimates, estimate

COLUMNS = ["path", "given_label", "label", "sample_id", "stratum", "inclusion", "draw"]


def audit_design(audit: Audit) -> Design:
    """The design of an audit: strata by its scan's rank, allocation on the scan's p(mislabeled)
    (before any answers were applied, apply.py ``scan_audit``)."""
    s = scan_audit(audit).samples
    return strata(s["rank"].to_numpy(), s["p_mislabeled"].to_numpy(), s["is_label_issue"].to_numpy(dtype=bool))


def design_key(design: Design) -> str:
    """A short digest of which sample is in which stratum: the same for every draw of one scan."""
    return hashlib.sha256(np.ascontiguousarray(design.stratum, dtype=np.int64).tobytes()).hexdigest()[:12]


def worksheet_rows(audit: Audit, n: int, seed: int = 0) -> pd.DataFrame:
    """The draw of ``n`` samples as worksheet rows, in random order."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UsageError(f"--n {n!r}: expected a whole number of samples to verify, 1 or more")
    design = audit_design(audit)
    picked = draw(design, int(n), seed=seed)
    rows = picked["row"].to_numpy()
    s = audit.samples
    return pd.DataFrame({"path": audit.files().to_numpy()[rows], "given_label": s["given_label"].to_numpy()[rows],
                         "label": "", "sample_id": s["sample_id"].to_numpy()[rows],
                         "stratum": picked["stratum"].to_numpy(), "inclusion": picked["inclusion"].to_numpy(),
                         "draw": design_key(design)})


def write_worksheet(audit: Audit, out: str | os.PathLike, n: int, seed: int = 0) -> pd.DataFrame:
    """Write the worksheet to ``out`` (CSV), never over an existing file (it may hold answers)."""
    out = Path(out)
    if out.exists():
        raise UsageError(f"--worksheet {out}: exists already and may hold answers; pick another name, or pass it "
                         "with --answers")
    rows = worksheet_rows(audit, n, seed)
    write_text_atomic(out, rows.to_csv(index=False))
    return rows


def read_answers(audit: Audit, path: str | os.PathLike, *, option: str = "--answers") -> pd.DataFrame:
    """The answered rows of a filled worksheet: ``row`` (the sample's row in the audit), ``label`` (a
    class of the audit, or ``none``). UsageError naming the file, the row and the fix otherwise."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option} {path}: cannot read it as CSV ({str(exc).splitlines()[0]}); pass the "
                         "filled-in worksheet") from None
    return check_answers(audit, table, f"{option} {path}")


def check_answers(audit: Audit, table: pd.DataFrame, where: str) -> pd.DataFrame:
    """:func:`read_answers` on a worksheet already read (strings); ``where`` names it in errors."""
    missing = [c for c in ("sample_id", "label") if c not in table.columns]
    if missing:
        raise UsageError(f"{where}: no {', '.join(missing)} column; pass the worksheet `labelaudit "
                         "review --worksheet` wrote, filled in")
    if "draw" in table.columns:
        key = design_key(audit_design(audit))
        stale = (table["draw"] != "") & (table["draw"] != key)
        if stale.any():
            raise UsageError(f"{where}: drawn from an earlier scan of this folder (its strata differ), so its "
                             "answers would bias the estimates; draw a new worksheet, or keep these answers as a "
                             "trusted set (scan --trusted FILE)")
    answered = table[table["label"].str.strip() != ""]
    ids = pd.to_numeric(answered["sample_id"], errors="coerce")
    s = audit.samples
    row_of = pd.Series(np.arange(len(s)), index=s["sample_id"].to_numpy())
    known = ids.isin(row_of.index)
    if not known.all():
        first = answered.index[~known.to_numpy()][0]
        raise UsageError(f"{where}: row {first + 2} names sample_id {answered['sample_id'].loc[first]!r}, "
                         "which this audit does not have; answer the worksheet of this audit")
    rows = row_of.loc[ids.to_numpy()].to_numpy()
    if "path" in answered.columns:
        files = audit.files().to_numpy()[rows]
        moved = answered["path"].to_numpy() != files
        if moved.any():
            first = answered.index[moved][0]
            raise UsageError(f"{where}: row {first + 2} names {answered['path'].loc[first]!r} but the "
                             f"audit's sample {answered['sample_id'].loc[first]} is {files[moved][0]!r}; answer "
                             "the worksheet of this audit")
    if len(np.unique(rows)) != len(rows):
        raise UsageError(f"{where}: a sample is answered twice; keep one answer per sample")
    labels = answered["label"].str.strip()
    classes = set(audit.run.data.classes) or set(s["given_label"])
    bad = ~(labels.isin(classes) | (labels.str.lower() == NONE))
    if bad.any():
        first = labels.index[bad.to_numpy()][0]
        raise UsageError(f"{where}: row {first + 2} answers {labels.loc[first]!r}, not a class of the data "
                         f"({', '.join(sorted(classes)[:8])}{'…' if len(classes) > 8 else ''}) nor {NONE!r}; use "
                         "the class names, none for an image of no class, or leave the label empty")
    if len(rows) == 0:
        raise DataError(f"{where}: no row has a label yet; fill in the label column of the rows you checked")
    labels = labels.where(labels.str.lower() != NONE, NONE)
    return pd.DataFrame({"row": rows, "label": labels.to_numpy()})


def review_estimates(audit: Audit, design: Design, answers: pd.DataFrame, *, seed: int = 0) -> ReviewEstimates:
    """The stratified estimates of the answers (noise/stratified.py) for the audit's dataset, classes and flags;
    ``design``: :func:`audit_design` of the audit."""
    classes, given = class_index(audit)
    wrong, none = outcomes(audit, answers)
    return estimate(design, answers["row"].to_numpy(), wrong, none=none, given=given, classes=classes,
                    flags=audit.samples["is_label_issue"].to_numpy(dtype=bool), seed=seed)


def review_payload(audit: Audit, design: Design, answers: pd.DataFrame, result: ReviewEstimates,
                   source: str | os.PathLike) -> dict:
    """review.json's content: the estimates and what they rest on."""
    return {
        "answers": {"file": str(Path(source).resolve()), "n": int(len(answers)),
                    "n_none": int((answers["label"] == NONE).sum())},
        "design": {"strata_edges": list(STRATUM_EDGES), "stratum_sizes": design.sizes.tolist(),
                   "answers_per_stratum": np.bincount(design.stratum[answers["row"].to_numpy()],
                                                      minlength=len(design.sizes)).tolist(),
                   "draw": design_key(design),
                   "method": "strata by rank; a compromise of the Neyman allocations for the dataset's rate and "
                             "the flags' precision, on the audit's p(mislabeled); stratified (Horvitz-Thompson) "
                             "estimates post-stratified by domain; modified-Jeffreys posterior intervals",
                   "level": LEVEL},
        "noise_rate": result.rate.as_dict(),
        "no_class_rate": result.no_class.as_dict(),
        "flag_precision": None if result.precision is None else result.precision.as_dict(),
        "classes": {name: e.as_dict() for name, e in result.classes.items()},
    }


def apply_answers(audit: Audit, answers: pd.DataFrame, source: str | os.PathLike, *, seed: int = 0) -> Applied:
    """The verified estimates of ``answers`` (from :func:`read_answers`), applied to the audit in place
    (apply.py) with review.json beside it."""
    base = scan_audit(audit)
    design = audit_design(base)
    result = review_estimates(base, design, answers, seed=seed)
    return apply_review(audit, design, answers, result, review_payload(base, design, answers, result, source))
