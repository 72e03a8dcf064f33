"""Stage 6 — decisions: from p(mislabeled) and the scores to what samples.parquet says of each sample.

``is_label_issue`` = p > threshold; ``rank`` by ``score`` (1 = most suspicious); ``weight`` = 1 − p, the
clean probability (the AUL paper's Sec. 4.2 prints z_i, the mislabel probability, but its text means
the clean one); ``predicted_label`` = the most likely true label (argmax of the mean probabilities, or
IEG's augmentation-averaged pseudo label). Verified samples keep what was verified.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data.dataset import Dataset
from .noise.mixture import NoiseFit
from .scores import rank_descending

SAMPLE_COLUMNS = [  # samples.parquet's contract columns, in order (../CONTRACT.md)
    "sample_id", "path", "given_label", "score", "p_mislabeled", "is_label_issue", "label_score",
    "rank", "predicted_label", "predicted_confidence", "weight", "aul", "aum",
]


def decide(p_mislabeled: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(p clipped to [0, 1], is_label_issue = p > threshold): the one rule for the flags."""
    p = np.clip(p_mislabeled, 0.0, 1.0)
    return p, p > threshold


def set_p(samples: pd.DataFrame, p_mislabeled: np.ndarray, threshold: float) -> pd.DataFrame:
    """``samples`` with p_mislabeled and what follows from it: is_label_issue (:func:`decide`),
    label_score and weight = 1 − p (the clean probability, AUL Sec. 4.2 as its text means it)."""
    p, flags = decide(p_mislabeled, threshold)
    return samples.assign(p_mislabeled=p, is_label_issue=flags, label_score=1.0 - p, weight=1.0 - p)


def build_samples(ds: Dataset, *, aul_s: np.ndarray, aum_s: np.ndarray, score: np.ndarray,
                  fit: NoiseFit, mean_probs: np.ndarray, threshold: float,
                  limit_s: np.ndarray | None = None, knn_s: np.ndarray | None = None) -> pd.DataFrame:
    """samples.parquet: the contract's columns (CONTRACT.md), in its order, then extras
    (``limit_distance`` when LIMIT ran, ``knn`` when a pretrained backbone's embeddings exist)."""
    pred = mean_probs.argmax(axis=1)
    df = set_p(ds.samples.assign(score=score), fit.p_mislabeled, threshold)
    df["rank"] = rank_descending(score)
    df["predicted_label"] = np.asarray(ds.classes, dtype=object)[pred]
    df["predicted_confidence"] = mean_probs[np.arange(len(pred)), pred].astype(np.float64)
    df["aul"] = aul_s
    df["aum"] = aum_s
    df["given_confidence"] = mean_probs[np.arange(len(pred)), ds.labels].astype(np.float64)
    extras = ["given_confidence"]
    if limit_s is not None:
        df["limit_distance"] = np.asarray(limit_s, dtype=np.float64)
        extras.append("limit_distance")
    if knn_s is not None:
        df["knn"] = np.asarray(knn_s, dtype=np.float64)
        extras.append("knn")
    return df[SAMPLE_COLUMNS + extras]


def apply_verified(samples: pd.DataFrame, rows: np.ndarray, verified: np.ndarray) -> pd.DataFrame:
    """What a person verified, kept in samples.parquet (``scan --trusted`` and ``labelaudit review``):
    ``rows`` (M,) the verified samples, ``verified`` (M,) the class each image shows, or None for an
    image of no class. p_mislabeled becomes 1 where that differs from the given label and 0 where it
    agrees (and is_label_issue, label_score, weight with it), predicted_label the verified class with
    confidence 1; the extra columns ``verified_label`` (null elsewhere, kept from an earlier round) and,
    when an image was of no class, ``verified_no_class``. ``score`` and ``rank`` stay the scorer's, so
    the ranking is still the audit's own."""
    rows = np.asarray(rows, dtype=np.int64)
    verified = np.asarray(verified, dtype=object)
    no_class = np.array([v is None for v in verified], dtype=bool)
    given = samples["given_label"].astype(str).to_numpy()[rows]
    wrong = (no_class | (verified.astype(str) != given)).astype(np.float64)
    samples = samples.copy()
    col = samples.columns.get_loc
    samples.iloc[rows, col("p_mislabeled")] = wrong
    samples.iloc[rows, col("is_label_issue")] = wrong > 0
    samples.iloc[rows, col("label_score")] = 1.0 - wrong
    samples.iloc[rows, col("weight")] = 1.0 - wrong
    named = rows[~no_class]
    samples.iloc[named, col("predicted_label")] = verified[~no_class]
    samples.iloc[named, col("predicted_confidence")] = 1.0
    column = samples["verified_label"].to_numpy(dtype=object).copy() if "verified_label" in samples \
        else np.full(len(samples), None, dtype=object)
    column[rows] = verified
    samples["verified_label"] = column
    if no_class.any() or "verified_no_class" in samples:
        flag = samples["verified_no_class"].to_numpy(dtype=bool).copy() if "verified_no_class" in samples \
            else np.zeros(len(samples), dtype=bool)
        flag[rows] = no_class
        samples["verified_no_class"] = flag
    return samples
