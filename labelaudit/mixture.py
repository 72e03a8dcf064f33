"""Stage 5 — noise model: scores → p(mislabeled), the dataset noise rate and per-class rates.

AUL paper Sec. 4.1: fit a 2-component Gaussian mixture to the score; p(mislabeled) is the
posterior of the high-score component, the dataset noise rate is the mean posterior, and a class's
rate is the mean posterior among the samples given that label.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.mixture import GaussianMixture


@dataclass(frozen=True)
class NoiseFit:
    """A fitted noise model. ``p_mislabeled`` (N,) in [0, 1]; ``noise_rate`` = its mean."""

    p_mislabeled: np.ndarray
    noise_rate: float
    method: str  # how the estimate was made, for run.json and the summary
    details: dict = field(default_factory=dict)


def fit_gmm(score: np.ndarray, *, random_state: int = 0) -> NoiseFit:
    """2-component GaussianMixture on ``score`` (higher = more suspicious), AUL paper Sec. 4.1.

    A second component is kept only when BIC prefers two components to one; otherwise the data
    show no separate mislabeled mode and p(mislabeled) is 0 everywhere.
    """
    x = np.asarray(score, dtype=np.float64).reshape(-1, 1)
    n = len(x)
    if n < 4 or np.ptp(x) == 0:
        return NoiseFit(np.zeros(n), 0.0, "gmm: too few distinct scores for a mixture", {})
    one = GaussianMixture(1, random_state=random_state).fit(x)
    two = GaussianMixture(2, random_state=random_state, n_init=3).fit(x)
    bic1, bic2 = one.bic(x), two.bic(x)
    if bic2 >= bic1:
        return NoiseFit(np.zeros(n), 0.0, "gmm: one component (BIC), no mislabeled mode",
                        {"bic1": bic1, "bic2": bic2})
    hi = int(np.argmax(two.means_.ravel()))
    p = two.predict_proba(x)[:, hi]
    return NoiseFit(p, float(p.mean()), "gmm: 2 components on the score, p = posterior of the high one",
                    {"bic1": bic1, "bic2": bic2, "means": two.means_.ravel().tolist(),
                     "weights": two.weights_.tolist()})


def noise_table(p_mislabeled: np.ndarray, given: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """noise.parquet: a ``dataset`` row, then a ``class`` row per class (rate = mean posterior within
    the samples *given* that label)."""
    p = np.asarray(p_mislabeled, dtype=np.float64)
    rows = [("dataset", None, len(p), float(p.mean()) if len(p) else 0.0)]
    for k, name in enumerate(classes):
        in_class = p[given == k]
        rows.append(("class", name, len(in_class), float(in_class.mean()) if len(in_class) else 0.0))
    df = pd.DataFrame(rows, columns=["scope", "label", "n_samples", "noise_rate"])
    df["n_samples"] = df["n_samples"].astype("int64")
    df["n_mislabeled"] = df["noise_rate"] * df["n_samples"]
    return df
