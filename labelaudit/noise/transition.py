"""Stage 6 — the noise-transition matrix T and the two views of per-class noise.

Orientation everywhere: ``T[i, j] = P(noisy label = j | true label = i)``; rows sum to 1.

Two estimators:

``anchors`` — Patrini et al., Sec. 4.3, Theorem 3, Eq. 12–13: for each class i, the anchor x̄_i is
the sample whose p̂(ỹ = i | x) sits at the α-quantile of that column (Sec. 5.1 uses α = 97%; α = 1
is Eq. 12's argmax), and ``T[i, :] = p̂(ỹ | x̄_i)``, rows normalised. It assumes "perfect examples"
of every class and a network that models p(ỹ | x); both are shaky on a small proxy.

``counts`` (default) — from the audit itself: each sample given label j adds its clean probability
1 − p_n to ``C[j, j]`` and its mislabel probability p_n to ``C[i, j]``, i the class other than j
that the proxy finds most probable. ``C`` estimates the joint of (true, given) counts and
``T = C / C.sum(axis=1)``. Its column sums are the given-label counts and its diagonal the clean
counts, so the per-class noise rates it implies are exactly noise.parquet's: the two never disagree.

The two views of per-class noise. noise.parquet's class rate is the *given-label* view: the share of
samples labelled j whose label is wrong, ``1 − P(true = j | given = j)``. A row of T is the
*true-label* view: where the samples that truly are i end up. With π the true-class prior they are
linked by Bayes: ``P(true = i | given = j) = π_i T[i, j] / Σ_k π_k T[k, j]``
(:func:`given_label_rates`).

Which estimator and which probabilities were chosen by ``benchmarks/transition.py`` (docs/scores.md):
the count estimate with the hard assignment had the lowest transition_row_l1 on every development
set; anchors from the all-epoch mean softmax were the best anchor variant on digits and poor on
CIFAR-10, where the small proxy is far from modelling p(ỹ | x).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


TRANSITIONS = ("counts", "anchors")


def _normalise_rows(m: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1; an all-zero row becomes the identity row (no evidence of noise)."""
    m = np.asarray(m, dtype=np.float64)
    sums = m.sum(axis=1, keepdims=True)
    out = np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)
    empty = sums.ravel() <= 0
    out[empty] = np.eye(m.shape[0])[empty]
    return out


def anchor_transition(probs: np.ndarray, quantile: float = 0.97) -> tuple[np.ndarray, np.ndarray]:
    """Patrini Eq. 12–13 with the α-quantile of Sec. 5.1 in place of the argmax.

    probs: (N, K) noisy-class probabilities p̂(ỹ | x). Returns (T (K, K), anchors (K,) sample indices).
    The anchor of class i is the sample whose p̂(ỹ = i | x) is the α-quantile of that column (an
    actual sample, so ties at the top — many perfect examples — still yield one of them). ``probs``
    is never modified (zeroing the column above the percentile in place, as reference code does,
    corrupts the matrix for the next class's anchor).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile={quantile!r}: expected a number in (0, 1]")
    n, k = probs.shape
    anchors = np.empty(k, dtype=np.int64)
    position = int(np.ceil(quantile * (n - 1)))  # the order statistic at the α-quantile
    for i in range(k):
        anchors[i] = int(np.argmax(probs[:, i])) if quantile >= 1.0 \
            else int(np.argsort(probs[:, i], kind="stable")[position])
    return _normalise_rows(probs[anchors]), anchors


def count_joint(p_mislabeled: np.ndarray, given: np.ndarray, probs: np.ndarray, *, hard: bool = True) -> np.ndarray:
    """C[i, j] ≈ number of samples with true label i and given label j (see the module docstring).

    A mislabeled sample's mass goes to the most probable other class (``hard``), or is spread over
    the other classes in proportion to ``probs``.
    """
    p = np.clip(np.asarray(p_mislabeled, dtype=np.float64), 0.0, 1.0)
    given = np.asarray(given, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n, k = probs.shape
    rows = np.arange(n)
    other = probs.copy()
    other[rows, given] = 0.0  # where a mislabeled sample truly belongs: any class but the given one
    if hard:
        other = np.eye(k)[other.argmax(axis=1)] * (other.max(axis=1, keepdims=True) > 0)
    sums = other.sum(axis=1, keepdims=True)
    uniform = (np.ones((n, k)) - np.eye(k)[given]) / max(k - 1, 1)
    other = np.where(sums > 0, other / np.where(sums > 0, sums, 1.0), uniform)
    joint = np.zeros((k, k))
    np.add.at(joint.T, given, other * p[:, None])  # joint[:, j] += p_n · other_n for given j
    np.add.at(joint, (given, given), 1.0 - p)
    return joint


def count_transition(p_mislabeled: np.ndarray, given: np.ndarray, probs: np.ndarray, *,
                     hard: bool = True) -> np.ndarray:
    """T from the audit's own posteriors: the count joint, rows normalised."""
    return _normalise_rows(count_joint(p_mislabeled, given, probs, hard=hard))


def estimate_transition(name: str, *, p_mislabeled: np.ndarray, given: np.ndarray, probs: np.ndarray,
                        quantile: float = 0.97, joint: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """T by the named estimator (``counts`` | ``anchors``) and a record of how, for run.json.

    probs: (N, K) the proxy's softmax averaged over all epochs (Dynamics.mean_probs). ``joint``: the
    :func:`count_joint` of the same arrays when the caller already has it.
    """
    if name == "counts":
        joint = count_joint(p_mislabeled, given, probs) if joint is None else joint
        return _normalise_rows(joint), {
            "estimator": "counts",
            "probabilities": "noise-model posteriors p_mislabeled; a mislabeled sample's true class = the "
                             "most probable other class under the softmax averaged over all proxy epochs"}
    if name == "anchors":
        t, anchors = anchor_transition(probs, quantile)
        return t, {"estimator": "anchors", "anchor_quantile": quantile, "anchor_sample_ids": anchors.tolist(),
                   "probabilities": "softmax averaged over all proxy epochs (training forward passes)"}
    raise ValueError(f"name={name!r}: unknown transition estimator; choose one of {', '.join(TRANSITIONS)}")


def given_label_rates(t: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The given-label view implied by T and a true-class prior π: ``1 − π_j T[j, j] / Σ_k π_k T[k, j]``."""
    t = np.asarray(t, dtype=np.float64)
    joint = np.asarray(prior, dtype=np.float64)[:, None] * t
    given_mass = joint.sum(axis=0)
    return 1.0 - np.divide(np.diag(joint), given_mass, out=np.ones(len(t)), where=given_mass > 0)


def transition_frame(t: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """transition.parquet: long form ``true_label, noisy_label, p`` (CONTRACT.md)."""
    k = len(classes)
    names = np.asarray(classes, dtype=object)
    return pd.DataFrame({"true_label": np.repeat(names, k), "noisy_label": np.tile(names, k),
                         "p": np.asarray(t, dtype=np.float64).reshape(-1)})


def transition_matrix(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Back from transition.parquet's long form to (T, classes), classes in the file's order."""
    classes = list(dict.fromkeys(frame["true_label"].astype(str)))
    wide = frame.assign(true_label=frame["true_label"].astype(str), noisy_label=frame["noisy_label"].astype(str)) \
        .pivot(index="true_label", columns="noisy_label", values="p").reindex(index=classes, columns=classes)
    return wide.fillna(0.0).to_numpy(), classes


def top_flows(t: np.ndarray, classes: list[str], *, limit: int = 5, min_p: float = 0.02) -> list[dict]:
    """The largest off-diagonal entries of T, largest first: ``{"true", "noisy", "p"}``."""
    t = np.asarray(t, dtype=np.float64)
    off = t.copy()
    np.fill_diagonal(off, 0.0)
    order = np.argsort(-off, axis=None, kind="stable")[:limit]
    flows = []
    for flat in order:
        i, j = divmod(int(flat), len(classes))
        if off[i, j] < min_p:
            break
        flows.append({"true": classes[i], "noisy": classes[j], "p": float(off[i, j])})
    return flows


def transition_rates(t: np.ndarray, joint: np.ndarray, given: np.ndarray) -> np.ndarray:
    """noise.parquet's ``transition_rate``: the given-label rates that T (K, K) implies, dataset row
    first; ``joint`` (K, K) the count joint (:func:`count_joint`), ``given`` (N,) the given labels.

    The true-class prior is the count joint's row mass, Σ_j C[i, j] = Σ_n P(true = i | x_n): the
    clean mass of class i plus the mislabeled mass the audit sends to i. Under ``counts`` these
    equal ``noise_rate`` exactly; under ``anchors`` they are a second, independent estimate.
    """
    prior = joint.sum(axis=1)
    rates = given_label_rates(t, prior / max(prior.sum(), 1e-12))
    given_counts = np.bincount(given, minlength=t.shape[0])
    dataset = float((rates * given_counts).sum() / max(given_counts.sum(), 1))
    return np.concatenate([[dataset], rates])
