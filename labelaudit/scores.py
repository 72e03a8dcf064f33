"""Stage 4 — scores: pure functions over recorded arrays, one value per sample.

Directions (also in the Parquet schema metadata and docs/scores.md):
- ``aul``: higher = more likely mislabeled.
- ``aum``: lower = more likely mislabeled.
- ``limit_distance``: higher = more likely mislabeled.
- ``score`` (the ranking column): higher = more likely mislabeled, always.

Also one number for the whole run: ``proxy_agreement``, how far the proxy learned the given labels
(Cohen's κ), with the warning ``unlearned_note`` that the summary, report.html and ``check`` share.
"""
from __future__ import annotations

import numpy as np

DIRECTIONS = {
    "aul": "higher = more likely mislabeled",
    "aum": "lower = more likely mislabeled",
    "limit_distance": "higher = more likely mislabeled",
    "knn": "higher = more likely mislabeled",
    "score": "higher = more likely mislabeled",
    "p_mislabeled": "higher = more likely mislabeled",
    "label_score": "lower = more likely mislabeled",
}

SCORES = ("aul", "aum", "limit", "knn")  # the scorers --scores can run (knn: with --weights, on its embeddings)
_SIGN = {"aul": 1.0, "aum": -1.0, "limit": 1.0, "knn": 1.0}  # orientation: sign that makes higher = more suspicious
# Neighbours the neighbourhood score asks: √N, within [KNN_MIN, KNN_MAX] (k ∝ √N is the classical rate
# for a k-NN vote's bias and variance). On the frozen embeddings benchmarks/backbones.py caches, this
# function and fuse("z-mean") with the audits' AUM gave fused AUROC: CIFAR-10N random_label1 10k 0.949 at
# k = 10, 0.952 at 25–100; the four digits cases within 0.001 of their best at 25–100 (0.986 against
# 0.985 at 10 on asym 0.2). Rerunning benchmarks/backbones.py measures the default end to end.
KNN_MIN, KNN_MAX = 10, 100


def knn_neighbours(n: int) -> int:
    """How many neighbours the neighbourhood score asks among ``n`` samples: √n within [KNN_MIN, KNN_MAX]."""
    return int(np.clip(round(np.sqrt(max(n, 0))), KNN_MIN, KNN_MAX))


def knn_disagreement(embeddings: np.ndarray, labels: np.ndarray, k: int | None = None, chunk: int = 2048) -> np.ndarray:
    """The neighbourhood score: the share of a sample's ``k`` nearest neighbours (cosine similarity of
    the embeddings, the sample itself left out; None: :func:`knn_neighbours`) whose given label differs
    from its own, (N,) in [0, 1]; higher = more likely mislabeled. Deep k-NN for noisy labels (Bahri et
    al., ICML 2020) filters on this vote, and SimiFeat (Zhu et al., ICML 2022) builds on the same
    neighbourhood. Computed in chunks of rows, so memory is O(chunk · N), never N × N."""
    import torch

    x = torch.nn.functional.normalize(torch.tensor(np.asarray(embeddings, dtype=np.float32)), dim=1)
    y = torch.tensor(np.asarray(labels, dtype=np.int64))
    n = x.shape[0]
    k = max(1, min(knn_neighbours(n) if k is None else k, n - 1))
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk):
        sims = x[start:start + chunk] @ x.T  # (c, N)
        rows = torch.arange(start, min(start + chunk, n))
        sims[torch.arange(len(rows)), rows] = -float("inf")  # not its own neighbour
        nearest = sims.topk(k, dim=1).indices  # (c, k)
        out[start:start + chunk] = (y[nearest] != y[rows, None]).double().mean(dim=1).numpy()
    return out


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


def rank_descending(score: np.ndarray) -> np.ndarray:
    """1 = highest score; ties broken by position (stable), so ranks are a permutation of 1..N."""
    order = np.argsort(-np.asarray(score), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def oriented(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` of scorer ``name`` with the sign that makes higher = more likely mislabeled."""
    if name not in _SIGN:
        raise ValueError(f"score {name!r}: unknown; choose one of {', '.join(_SIGN)}")
    return _SIGN[name] * np.asarray(values, dtype=np.float64)


def rank_fraction(c: np.ndarray) -> np.ndarray:
    """Rank / N of each value (average ranks for ties): 1/N … 1, the higher the value the higher."""
    from scipy.stats import rankdata

    return rankdata(c) / len(c)


def robust_z(c: np.ndarray) -> np.ndarray:
    """The robust z-score (x − median) / IQR (IQR floored at 1e-12)."""
    q1, med, q3 = np.quantile(c, [0.25, 0.5, 0.75])
    return (c - med) / max(q3 - q1, 1e-12)


def _rank_mean(columns: list[np.ndarray]) -> np.ndarray:
    """Mean over scores of the rank fraction."""
    return np.mean([rank_fraction(c) for c in columns], axis=0)


def _z_mean(columns: list[np.ndarray]) -> np.ndarray:
    """Mean over scores of the robust z-score."""
    return np.mean([robust_z(c) for c in columns], axis=0)


def _posterior_mean(columns: list[np.ndarray]) -> np.ndarray:
    """Mean over scores of the posterior of the high-mean component of a 2-component Gaussian mixture
    fitted to that score alone (the AUL paper's Sec. 4.1 rule, per score), plus a 1e-6 × rank-mean
    tie-break so samples every mixture calls certain still get a strict order."""
    from sklearn.mixture import GaussianMixture

    post = []
    for c in columns:
        x = c.reshape(-1, 1)
        gmm = GaussianMixture(2, random_state=0, reg_covar=1e-6).fit(x)
        post.append(gmm.predict_proba(x)[:, int(np.argmax(gmm.means_.ravel()))])
    return np.mean(post, axis=0) + 1e-6 * _rank_mean(columns)


FUSIONS = {"z-mean": _z_mean, "rank-mean": _rank_mean, "posterior-mean": _posterior_mean}  # first = default


def fuse(rule: str, scores: dict[str, np.ndarray]) -> np.ndarray:
    """Fuse per-sample scores {scorer name: (N,) raw values} into one (N,) score, higher = more
    likely mislabeled. Each score is first oriented (``oriented``); with one score, that score."""
    if rule not in FUSIONS:
        raise ValueError(f"fusion {rule!r}: unknown; choose one of {', '.join(FUSIONS)}")
    if not scores:
        raise ValueError("fuse needs at least one score")
    columns = [oriented(name, values) for name, values in scores.items()]
    return columns[0] if len(columns) == 1 else FUSIONS[rule](columns)


PROXY_KAPPA_MIN = 0.2  # below this Cohen's κ the proxy has learned (almost) nothing the labels say


def proxy_agreement(predicted: np.ndarray, given: np.ndarray) -> dict:
    """How far the proxy learned the given labels: ``agreement``, the share of samples whose predicted
    class (the argmax of the softmax averaged over the proxy's epochs) is the given label, and Cohen's
    ``kappa`` (1960), that agreement beyond what predictions drawn independently of the labels would
    reach, κ = (p_o − p_e) / (1 − p_e) with p_e = Σ_k P(predicted k) P(given k) (sklearn's
    cohen_kappa_score). With a proxy that learned the clean classes and uniform noise at rate η over
    K classes, κ ≈ (1 − η − 1/K) / (1 − 1/K): 0.32 measured on scikit-learn digits with 62% noise,
    0 where the labels say nothing. Below PROXY_KAPPA_MIN either the proxy did not learn the classes
    or nearly every label is wrong, and the margins cannot tell the two apart: the scores and the
    noise rate say little (:func:`unlearned_note`)."""
    from sklearn.metrics import cohen_kappa_score

    predicted, given = np.asarray(predicted), np.asarray(given)
    kappa = float(cohen_kappa_score(given, predicted)) if len(np.union1d(given, predicted)) > 1 else 1.0
    return {"agreement": float((predicted == given).mean()), "kappa": kappa}


def unlearned_note(agreement: float | None, kappa: float | None) -> str | None:
    """The warning the summary, report.html and ``check`` give when the proxy's predictions agree with
    the given labels hardly more than chance (run.json ``summary.proxy_kappa`` < PROXY_KAPPA_MIN);
    None otherwise, and for audits written before the field existed."""
    if kappa is None or kappa >= PROXY_KAPPA_MIN:
        return None
    return (f"the proxy's predictions agree with the given labels on {agreement:.1%} of the "
            f"samples, hardly more than chance (Cohen's κ {kappa:.2f}): it has not learned the classes, or "
            f"nearly every label is wrong, so the scores and the noise rate say little. Train longer (--epochs), "
            f"give it more images per class or a larger --image-size, and check a few labels by hand "
            f"(labelaudit export AUDIT --mode verify)")
