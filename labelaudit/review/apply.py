"""Verified answers applied to the audit in place, without retraining.

From the answers of a review (worksheet.py's ``read_answers``, or the page's review.csv):

- the dataset's, each class's and the flags' error rates by the stratified estimator (noise/stratified.py);
- p(mislabeled) of every sample recalibrated on the verified ones by a design-weighted logistic
  model in the audit's own p and rank (noise/calibration.py ``recalibrate``), its mean made the
  stratified dataset rate; the verified samples get what was verified (``verified_label``, or
  ``verified_no_class`` for an image of no class) and the flags, label scores and weights follow;
- T: the verified (true, given) pairs, each weighted by the inverse of its inclusion probability,
  combined with the audit's T as ``scan --trusted`` combines its pairs (``combine_transition``);
- samples.parquet, suspects.parquet, weights.parquet, noise.parquet, transition.parquet, run.json
  (summary ``verified``, ``review``) and report.html rewritten, together with review.json, in one
  atomic swap of the folder. The scan's own files are kept in ``AUDIT/unverified/``: every later
  application starts again from them, so more answers never compound on an earlier recalibration.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import link_or_copy, replace_folder, write_text_atomic
from ..audit.read import Audit, load_audit
from ..audit.record import RunRecord
from ..audit.write import REVIEW_JSON, UNVERIFIED, write_json, write_tables
from ..decisions import apply_verified, set_p
from ..noise.calibration import Recalibration, combine_transition, pair_transition, recalibrate
from ..noise.mixture import noise_table
from ..noise.transition import count_joint, top_flows, transition_frame, transition_matrix, transition_rates
from ..report import render_report
from ..noise.sampling import Design
from ..noise.stratified import ReviewEstimates, domain_rate

NONE = "none"  # the answer for an image of no class
REWRITTEN = ("samples.parquet", "suspects.parquet", "weights.parquet", "noise.parquet", "transition.parquet",
             "report.html", REVIEW_JSON, UNVERIFIED, "run.json")  # run.json last: the marker
KEPT = ("samples.parquet", "suspects.parquet", "weights.parquet", "noise.parquet", "transition.parquet",
        "report.html", "run.json")  # the scan's own files, kept under unverified/


def scan_audit(audit: Audit) -> Audit:
    """The audit as its scan wrote it: ``AUDIT/unverified/`` once answers were applied, else itself."""
    kept = Path(audit.path) / UNVERIFIED
    return load_audit(kept) if (kept / "run.json").is_file() else audit


@dataclass(frozen=True)
class Applied:
    """What applying answers did: the audit as rewritten, the stratified estimates, the
    recalibration, and the flags' stated precision and recall (the recalibrated p's own account:
    the mean p of the flagged samples, and their share of the expected errors)."""

    audit: Audit
    estimates: ReviewEstimates
    recalibration: Recalibration
    n_flagged: int
    flag_precision: float | None
    flag_recall: float | None


def class_index(audit: Audit) -> tuple[list[str], np.ndarray]:
    """(the audit's classes in order, each sample's given class as an index into them)."""
    given = audit.samples["given_label"].astype(str)
    classes = [str(c) for c in (audit.run.data.classes or sorted(set(given)))]
    return classes, pd.Index(classes).get_indexer(given).astype(np.int64)


def outcomes(audit: Audit, answers: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(wrong, none) for each answer (``row``, ``label``): whether the given label is wrong, and whether
    the image shows no class at all (which is wrong too; a class named "none" is a class)."""
    classes = audit.run.data.classes or audit.samples["given_label"].astype(str).unique().tolist()
    label = answers["label"].astype(str).to_numpy()
    given = audit.samples["given_label"].astype(str).to_numpy()[answers["row"].to_numpy(dtype=np.int64)]
    none = (label == NONE) & (NONE not in classes)
    return none | (label != given), none


def design_weights(design: Design, rows: np.ndarray) -> np.ndarray:
    """Each answer's weight N_h / n_h: the inverse of its inclusion probability, post-stratified on the
    answers each stratum actually got."""
    h = design.stratum[np.asarray(rows, dtype=np.int64)]
    n_h = np.bincount(h, minlength=len(design.sizes))
    return design.sizes[h] / n_h[h]


def recalibrated(samples: pd.DataFrame, design: Design, rows: np.ndarray, wrong: np.ndarray,
                 target: float) -> tuple[np.ndarray, Recalibration]:
    """Every sample's p(mislabeled) recalibrated on the answered ``rows`` (noise/calibration.py
    ``recalibrate``): the scan's p and rank, the design's strata and weights, the mean made ``target``."""
    return recalibrate(samples["p_mislabeled"].to_numpy(dtype=np.float64), samples["rank"].to_numpy(), rows, wrong,
                       design_weights(design, rows), target=target, groups=design.stratum)


def apply_review(audit: Audit, design: Design, answers: pd.DataFrame, estimates: ReviewEstimates,
                 payload: dict) -> Applied:
    """Rewrite ``audit``'s folder from the verified ``answers`` (``row``, ``label``); ``design`` and
    ``estimates`` those of its scan (worksheet.py), ``payload`` review.json's content. See the module
    docstring."""
    base = scan_audit(audit)
    s = base.samples
    classes, given = class_index(base)
    rows = answers["row"].to_numpy(dtype=np.int64)
    label = answers["label"].astype(str).to_numpy()
    wrong, none = outcomes(base, answers)
    weights = design_weights(design, rows)
    p, recal = recalibrated(s, design, rows, wrong, estimates.rate.value)
    threshold = float(base.run.config.get("threshold", 0.5))
    samples = apply_verified(set_p(s, p, threshold), rows, np.where(none, None, label).astype(object))
    if "verified_no_class" not in samples:
        samples["verified_no_class"] = False
    is_class = ~none
    flags = samples["is_label_issue"].to_numpy(dtype=bool)

    # T: the verified pairs (a class answer) combined with the scan's T
    index = pd.Index(classes)
    t_audit = transition_matrix(base.transition)[0] if base.transition is not None else np.eye(len(classes))
    pairs = index.get_indexer(label[is_class]).astype(np.int64)
    t_pairs, n_eff = pair_transition(pairs, given[rows[is_class]], len(classes), weights[is_class])
    t, alpha = combine_transition(t_audit, t_pairs, n_eff)  # as scan --trusted combines its pairs
    transition = transition_frame(t, classes)
    transition["p_audit"] = t_audit.reshape(-1)
    transition["p_verified"] = t_pairs.reshape(-1)

    predicted = index.get_indexer(samples["predicted_label"].astype(str)).astype(np.int64)
    noise = noise_table(p, given, classes)
    noise["transition_rate"] = transition_rates(t, count_joint(p, given, _one_hot(predicted, given, len(classes))),
                                                given)
    by_class = [estimates.rate] + [estimates.classes.get(c) for c in classes]
    noise["verified_rate"] = [e.value if e else np.nan for e in by_class]
    noise["verified_low"] = [e.low if e else np.nan for e in by_class]
    noise["verified_high"] = [e.high if e else np.nan for e in by_class]

    precision = float(p[flags].mean()) if flags.any() else None
    recall = float(p[flags].sum() / p.sum()) if p.sum() > 0 else None
    flagged_check = domain_rate(design, rows, wrong, flags) if flags.any() else None
    n, n_none = int(len(rows)), int(none.sum())
    verified_summary = {"answers": n, "no_class": n_none, "unsupervised_noise_rate": base.summary.noise_rate,
                        "unsupervised_interval": base.summary.noise_rate_interval,
                        "flag_precision": precision, "flag_recall": recall}
    review_block = {**verified_summary, "answers_file": payload["answers"]["file"],
                    "recalibration": recal.as_dict(),
                    "flag_precision_verified": None if flagged_check is None else flagged_check.as_dict(),
                    "transition": {"method": "rows (n_i·T_pairs + α·T_audit) / (n_i + α), n_i the Kish effective "
                                             "number of design-weighted pairs of true class i",
                                   "alpha": alpha, "pairs_per_class": np.round(n_eff, 2).tolist()}}
    r = estimates.rate
    run = base.run
    run = dataclasses.replace(
        run,
        noise_model=dataclasses.replace(
            run.noise_model, method=f"{run.noise_model.method}; verified by {n:,} answers (labelaudit review): "
                                    "stratified estimate, p(mislabeled) recalibrated on them",
            interval={"level": 0.95, "method": f"stratified estimate from {n:,} verified answers, Jeffreys-posterior "
                                               "draws per stratum (review.json)"}),
        summary=dataclasses.replace(run.summary, noise_rate=r.value, noise_rate_interval=[r.low, r.high],
                                    noise_rate_model_range=None, n_label_issues=int(flags.sum()),
                                    top_flows=top_flows(t, classes),
                                    extra={**run.summary.extra, "verified": verified_summary}),
        extra={**run.extra, "review": review_block})
    payload = {**payload, "flags": {"n": int(flags.sum()), "stated_precision": precision, "stated_recall": recall,
                                    "precision_verified": review_block["flag_precision_verified"]}}
    new = Audit(Path(audit.path), samples, noise, run, audit.errors, transition, payload)
    _write(audit.path, base, new, payload)
    return Applied(load_audit(audit.path), estimates, recal, int(flags.sum()), precision, recall)


def _one_hot(predicted: np.ndarray, given: np.ndarray, k: int) -> np.ndarray:
    """(N, K) indicator of the predicted class, for count_joint's "where a mislabeled sample belongs";
    a sample predicted as its given class spreads evenly over the others."""
    out = np.zeros((len(predicted), k))
    ok = (predicted >= 0) & (predicted != given)
    out[np.flatnonzero(ok), predicted[ok]] = 1.0
    return out


def _write(folder: Path, base: Audit, new: Audit, payload: dict) -> None:
    folder = Path(folder)
    first = base.path == new.path  # no unverified/ yet: the scan's files are the folder's own
    source = folder if first else folder / UNVERIFIED
    report = render_report(new, top=int(base.run.config.get("report_top", 48))) \
        if (folder / "report.html").is_file() else None
    with replace_folder(folder, replaces=REWRITTEN) as stage:
        (stage / UNVERIFIED).mkdir()
        for name in KEPT:
            if (source / name).is_file():
                link_or_copy(source / name, stage / UNVERIFIED / name)
        write_tables(stage, new.samples, new.noise, new.transition)
        if report is not None:
            write_text_atomic(stage / "report.html", report)
        write_json(payload, stage / REVIEW_JSON)
        write_json(new.run.to_json() if isinstance(new.run, RunRecord) else new.run, stage / "run.json")
