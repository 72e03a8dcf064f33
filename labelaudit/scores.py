"""Stage 4 — scores: pure functions over recorded arrays, one value per sample.

Directions (also in the Parquet schema metadata and docs/scores.md):
- ``aul``: higher = more likely mislabeled.
- ``aum``: lower = more likely mislabeled.
- ``score`` (the ranking column): higher = more likely mislabeled, always.
"""
from __future__ import annotations

import numpy as np

DIRECTIONS = {
    "aul": "higher = more likely mislabeled",
    "aum": "lower = more likely mislabeled",
    "score": "higher = more likely mislabeled",
    "p_mislabeled": "higher = more likely mislabeled",
    "label_score": "lower = more likely mislabeled",
}

SCORES = ("aul", "aum")  # the scorers --score can rank by


def aul(loss: np.ndarray) -> np.ndarray:
    """Area under the loss curve, AUL paper Sec. 3: AUL(x, ỹ) = Σ_{i=1..T} L(φ_i(x), ỹ).

    loss: (E, N) per-epoch training losses → (N,). Higher = more likely mislabeled.
    """
    loss = np.asarray(loss, dtype=np.float64)
    if loss.ndim != 2:
        raise ValueError(f"loss must be (epochs, samples), got shape {loss.shape}")
    return loss.sum(axis=0)


def aum(margin: np.ndarray) -> np.ndarray:
    """Area under the margin (Pleiss et al. 2020): the mean over epochs of the assigned logit minus
    the largest other logit. margin: (E, N) → (N,). Lower = more likely mislabeled."""
    margin = np.asarray(margin, dtype=np.float64)
    if margin.ndim != 2:
        raise ValueError(f"margin must be (epochs, samples), got shape {margin.shape}")
    return margin.mean(axis=0)


def ranking_score(name: str, *, aul_scores: np.ndarray, aum_scores: np.ndarray) -> np.ndarray:
    """The ``score`` column for the chosen scorer, oriented so higher = more likely mislabeled."""
    choices = {"aul": lambda: aul_scores, "aum": lambda: -aum_scores}  # keys = SCORES
    if name not in choices:
        raise ValueError(f"score {name!r}: unknown; choose one of {', '.join(choices)}")
    return np.asarray(choices[name](), dtype=np.float64)


def rank_descending(score: np.ndarray) -> np.ndarray:
    """1 = highest score; ties broken by position (stable), so ranks are a permutation of 1..N."""
    order = np.argsort(-np.asarray(score), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks
