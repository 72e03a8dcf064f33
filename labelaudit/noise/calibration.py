"""The noise model against verified labels: a trusted set (samples whose labels someone checked by
hand) calibrates the unsupervised estimates. From Patrini et al., CVPR 2017, Sec. 5.3 (T from the
images that carry both a noisy and a curated label) and IEG (Zhang et al., CVPR 2020):

- :func:`pair_transition` — T estimated directly from (verified, given) pairs, and
  :func:`combine_transition`, which combines it with the audit's own estimate: each row's pair counts
  update a Dirichlet prior centred on the audit's row, whose strength α is weighed by how well the
  pairs agree with the audit (α integrated over its posterior): 10 pairs of a class say little next
  to an audit of thousands of samples unless they contradict it.
- :func:`calibrate` — the trusted samples that are also in the data re-estimate the noise model's
  prior: a mixture posterior p = π f₁ / (π f₁ + (1 − π) f₀) with its mixing weight π moved to π' is
  ``logit p' = logit p + a`` with ``a = logit π' − logit π``, so one shift a, fitted to the verified
  (wrong or right) outcomes, recalibrates every p(mislabeled), the noise rates, the flags, the
  weights and the count estimate of T together, and keeps the audit's ranking.
- :func:`flag_check` — how the audit's flags did on the trusted samples whose given label is known.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.trusted import TrustedSet
from .mixture import NoiseFit
from .transition import transition_frame

SHIFT_PRIOR_SD = 3.0  # prior N(0, 3²) on the log-odds shift: keeps it finite when every verified label agrees
P_CLIP = 1e-6  # posteriors are clipped to [1e-6, 1 − 1e-6] before the logit (mixtures underflow to 0 and 1)
Z95 = 1.959963984540054


def pair_transition(verified: np.ndarray, given: np.ndarray, k: int,
                    weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """T from (verified, given) label pairs: ``T[i, j] = #(verified = i, given = j) / #(verified = i)``.

    Patrini Sec. 5.3 (Clothing1M: T from the images with both labels). Pairs with ``given < 0`` (a
    trusted image that is not in the main data) carry no information on the noise and are left out.
    With ``weights`` (a review's inverse inclusion probabilities) the counts are weighted sums, and a
    class's pair count is its Kish effective size ``(Σw)² / Σw²``, so pairs of very unequal weight
    count for what they are worth; without, every pair weighs 1 and that is the plain count.
    Returns (T (K, K), with NaN rows where a class has no pair; pairs per class (K,)).
    """
    verified, given = np.asarray(verified, dtype=np.int64), np.asarray(given, dtype=np.int64)
    w = np.ones(len(verified)) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = given >= 0
    verified, given, w = verified[ok], given[ok], w[ok]
    counts = np.zeros((k, k), dtype=np.float64)
    np.add.at(counts, (verified, given), w)
    mass = counts.sum(axis=1)
    squares = np.bincount(verified, weights=w ** 2, minlength=k)
    n = np.where(squares > 0, mass ** 2 / np.where(squares > 0, squares, 1.0), 0.0)
    t = np.full((k, k), np.nan)
    t[mass > 0] = counts[mass > 0] / mass[mass > 0, None]
    return t, n


CONCENTRATIONS = np.logspace(0, 4, 81)  # α's grid, log-uniform prior: 1 (trust the pairs) … 10,000 (trust the audit)
FLOOR = 1e-3  # share of a row's prior mass spread evenly, so a flow the audit missed stays possible


def concentration_loglik(t_audit: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """log p(pair counts | α) on :data:`CONCENTRATIONS`: every row's counts are Dirichlet-multinomial
    under the prior ``Dir(α·T_audit[i])`` (floored by :data:`FLOOR`), rows independent. Rows without
    pairs contribute nothing (an all-zero vector)."""
    from scipy.special import gammaln

    k = t_audit.shape[0]
    base = (1.0 - FLOOR) * np.asarray(t_audit, dtype=np.float64) + FLOOR / k  # (K, K), rows sum to 1
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum(axis=1)
    rows = n > 0
    base, c, n = base[rows], c[rows], n[rows]
    return np.array([float(np.sum(gammaln(a) - gammaln(n + a)) + np.sum(gammaln(c + a * base) - gammaln(a * base)))
                     for a in CONCENTRATIONS])


def prior_concentration(t_audit: np.ndarray, counts: np.ndarray) -> float:
    """The α maximising the pairs' marginal likelihood (:func:`concentration_loglik`): large when the
    pairs look like draws from the audit's rows, small when they contradict them."""
    return float(CONCENTRATIONS[int(np.argmax(concentration_loglik(t_audit, counts)))])


def combine_transition(t_audit: np.ndarray, t_pairs: np.ndarray, n_pairs: np.ndarray,
                       prior: float | None = None) -> tuple[np.ndarray, float]:
    """Each row's posterior mean under the prior ``Dir(α·T_audit[i])`` and the row's pair counts,
    ``(n_i T_pairs[i] + α T_audit[i]) / (n_i + α)``; a class without pairs keeps the audit's row.

    With ``prior`` that α. Without, α is integrated out: the rows are averaged over
    :data:`CONCENTRATIONS` weighted by α's posterior (log-uniform prior × :func:`concentration_loglik`).
    With ~10 pairs a class the likelihood is flat over a wide range of α and its maximum alone swings
    from seed to seed (benchmarks/trusted.py); the average does not stake everything on it. Returns
    (T, α) with α the posterior's geometric mean (or ``prior``); rows sum to 1.
    """
    t_audit = np.asarray(t_audit, dtype=np.float64)
    n = np.asarray(n_pairs, dtype=np.float64)[:, None]
    pairs = np.nan_to_num(np.asarray(t_pairs, dtype=np.float64), nan=0.0)

    def rows(alpha: float) -> np.ndarray:
        return (n * pairs + alpha * t_audit) / (n + alpha)

    if prior is not None:
        return rows(float(prior)), float(prior)
    if not (n > 0).any():
        return t_audit.copy(), float(CONCENTRATIONS[-1])
    loglik = concentration_loglik(t_audit, pairs * n)
    weights = np.exp(loglik - loglik.max())
    weights /= weights.sum()
    combined = sum(w * rows(a) for w, a in zip(weights, CONCENTRATIONS))
    return combined, float(np.exp(np.sum(weights * np.log(CONCENTRATIONS))))


@dataclass(frozen=True)
class Calibration:
    """The log-odds shift ``a`` fitted on the trusted samples in the data (MAP under N(0, 3²)), its
    standard error, how many samples it rests on, and the noise rate before and after with a 95%
    interval from a ± 1.96·se."""

    shift: float
    se: float
    n: int
    n_wrong: int
    noise_rate_before: float
    noise_rate: float
    interval: tuple[float, float]

    def as_dict(self) -> dict:
        return {"shift": self.shift, "se": self.se, "n": self.n, "n_wrong": self.n_wrong,
                "noise_rate_before": self.noise_rate_before, "noise_rate": self.noise_rate,
                "interval": list(self.interval)}


def clipped_logit(p: np.ndarray) -> np.ndarray:
    from scipy.special import logit

    return logit(np.clip(np.asarray(p, dtype=np.float64), P_CLIP, 1.0 - P_CLIP))


def offset_for_sum(eta: np.ndarray, total: float) -> float | None:
    """The shift c with ``Σ σ(eta + c) = total``, by Brent's method on [−60, 60] (the sum rises with
    c); None when no c in that range reaches it."""
    from scipy.optimize import brentq
    from scipy.special import expit

    def excess(c: float) -> float:
        return float(expit(eta + c).sum()) - total

    if len(eta) == 0 or not excess(-60.0) < 0 < excess(60.0):
        return None
    return float(brentq(excess, -60.0, 60.0))


def shift_posteriors(p: np.ndarray, shift: float) -> np.ndarray:
    """``σ(logit p + shift)``: the posteriors of the same mixture with its prior odds times e^shift."""
    from scipy.special import expit

    return expit(clipped_logit(p) + shift)


def calibrate(p: np.ndarray, trusted_rows: np.ndarray, wrong: np.ndarray) -> tuple[np.ndarray, Calibration]:
    """Recalibrate p(mislabeled) with verified outcomes: ``p' = σ(logit p + a)`` (module docstring).

    p: (N,) the noise model's posteriors; trusted_rows: (M,) rows of p whose given label was verified;
    wrong: (M,) whether that given label is wrong. ``a`` maximises
    ``Σ_t [y_t log σ(ℓ_t + a) + (1 − y_t) log(1 − σ(ℓ_t + a))] − a² / (2·3²)`` (a logistic regression
    with only an offset, ℓ_t = logit p_t, and a weak prior), found as the root of its derivative
    ``Σ_t (y_t − σ(ℓ_t + a)) − a / 9``, which falls monotonically. Returns (p', Calibration).
    """
    from scipy.optimize import brentq
    from scipy.special import expit

    p = np.asarray(p, dtype=np.float64)
    rows = np.asarray(trusted_rows, dtype=np.int64)
    y = np.asarray(wrong, dtype=np.float64)
    if len(rows) == 0:
        raise ValueError("calibrate needs at least one trusted sample in the data")
    ell_all = clipped_logit(p)  # once: the shift, the posteriors and both interval ends all start from it
    ell = ell_all[rows]
    bound = 40.0  # |a| ≤ 40 covers every clipped logit (|logit 1e-6| ≈ 13.8) several times over

    def slope(a: float) -> float:
        return float(np.sum(y - expit(ell + a)) - a / SHIFT_PRIOR_SD ** 2)

    shift = brentq(slope, -bound, bound)
    q = expit(ell + shift)
    se = float(1.0 / np.sqrt(np.sum(q * (1.0 - q)) + 1.0 / SHIFT_PRIOR_SD ** 2))
    p_new = expit(ell_all + shift)
    interval = (float(expit(ell_all + shift - Z95 * se).mean()), float(expit(ell_all + shift + Z95 * se).mean()))
    return p_new, Calibration(float(shift), se, int(len(rows)), int(y.sum()), float(p.mean()), float(p_new.mean()),
                              interval)


def flag_check(verified: np.ndarray, given: np.ndarray, flagged: np.ndarray) -> dict:
    """How the audit did on the trusted samples that are also main samples (``given ≥ 0``).

    ``recall``: the share of those whose given label is wrong that the audit flagged;
    ``false_alarm_rate``: the share of those whose given label is right that it flagged. None where
    the trusted set has no such sample.
    """
    verified, given, flagged = np.asarray(verified), np.asarray(given), np.asarray(flagged, dtype=bool)
    known = given >= 0
    wrong = known & (verified != given)
    right = known & (verified == given)
    return {
        "n_in_data": int(known.sum()),
        "n_given_wrong": int(wrong.sum()),
        "n_given_right": int(right.sum()),
        "n_wrong_flagged": int((wrong & flagged).sum()),
        "n_right_flagged": int((right & flagged).sum()),
        "recall": float(flagged[wrong].mean()) if wrong.any() else None,
        "false_alarm_rate": float(flagged[right].mean()) if right.any() else None,
        "given_label_error_rate": float(wrong.sum() / known.sum()) if known.any() else None,
    }


def calibrated(fit: NoiseFit, trust: TrustedSet | None, *,
               enabled: bool = True) -> tuple[NoiseFit, Calibration | None, str | None]:
    """The noise model recalibrated on the trusted samples that are in the data (:func:`calibrate`), or
    the fit unchanged and why. Returns (fit, calibration, reason it was not done)."""
    if trust is None:
        return fit, None, None
    if not enabled:
        return fit, None, "turned off (--no-trusted-calibration)"
    if not trust.inside.any():
        return fit, None, "no trusted sample is also in the data, so no given label was verified"
    rows, _, wrong = trust.verified_rows()
    p_new, cal = calibrate(fit.p_mislabeled, rows, wrong)
    method = (f"{fit.method}; recalibrated on {cal.n} verified samples: logit p + {cal.shift:.3f} "
              "(the mixture's prior odds re-estimated, trusted.calibrate)")
    return dataclasses.replace(fit, p_mislabeled=p_new, noise_rate=cal.noise_rate, method=method,
                               interval=cal.interval, model_range=None, draws=None), cal, None


def with_trusted(trust: TrustedSet, classes: list[str], flags: np.ndarray, t_audit: np.ndarray,
                 t_calibrated: np.ndarray | None) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """The trusted set's part of a scan: T from (verified, given) pairs combined with the audit's T
    (``t_calibrated`` when given: the count estimate from the posteriors after the trusted set's
    recalibration and verified labels), and how the audit did on the trusted samples
    (:func:`flag_check`). ``flags``: the unsupervised audit's is_label_issue (before any recalibration, which
    has seen these samples). Returns (T, transition frame, run.json block)."""
    k = len(classes)
    t_pairs, n_pairs = pair_transition(trust.labels, trust.given, k)
    t_final, alpha = combine_transition(t_audit if t_calibrated is None else t_calibrated, t_pairs, n_pairs)
    frame = transition_frame(t_final, classes)
    frame["p_audit"] = np.asarray(t_audit, dtype=np.float64).reshape(-1)
    frame["p_trusted"] = t_pairs.reshape(-1)  # NaN for a class without pairs
    if t_calibrated is not None:
        frame["p_calibrated"] = np.asarray(t_calibrated, dtype=np.float64).reshape(-1)
    flagged = np.zeros(len(trust.labels), dtype=bool)
    flagged[trust.inside] = flags[trust.verified_rows()[0]]
    counts = trust.counts(k)
    info = {
        "file": str(Path(trust.source).resolve()), "n": int(len(trust.labels)),
        "per_class": {"min": int(counts.min()), "max": int(counts.max()),
                      "classes_without": [c for c, n in zip(classes, counts) if n == 0][:20]},
        "check": flag_check(trust.labels, trust.given, flagged),
        "transition": {"method": "rows (n_i·T_pairs + α·T_audit) / (n_i + α): the posterior mean under a Dirichlet "
                                 "prior centred on the audit's row, averaged over α's posterior (log-uniform "
                                 "prior on 1..10^4 × the pairs' marginal likelihood; alpha = its geometric mean); "
                                 "n_i = trusted samples of true class i that are in the data (Patrini Sec. 5.3 pairs)",
                       "alpha": alpha, "pairs_per_class": n_pairs.astype(int).tolist()},
    }
    return t_final, frame, info


# --- recalibration from a review's answers: a design-weighted logistic model in the audit's own numbers
RECAL_PRIOR_MEAN = np.array([0.0, 1.0, 0.0])  # (intercept, logit p, rank log-odds): the audit's p unchanged
RECAL_PRIOR_SD = np.array([3.0, 1.0, 1.0])


def rank_logit(rank: np.ndarray) -> np.ndarray:
    """The rank as log-odds, ``log((1 − q) / q)`` with ``q = (rank − ½) / N`` the share of the ranked
    list above the sample: about ``log N`` for the most suspicious sample, 0 at the median, ``−log N``
    at the bottom. Informative where the noise model's p is not (no second component: p ≈ 0 for all)."""
    rank = np.asarray(rank, dtype=np.float64)
    q = (rank - 0.5) / max(len(rank), 1)
    return np.log1p(-q) - np.log(q)


@dataclass(frozen=True)
class Recalibration:
    """``logit p' = a + b·logit p + c·rank_logit + u_group + offset``: the coefficients (a, b, c) and
    the groups' effects u fitted on the verified samples, the offset that makes the mean of p' the verified dataset rate, and what the
    fit rests on."""

    coef: tuple[float, float, float]
    offset: float
    n: int
    n_wrong: int
    target: float | None
    group_effects: tuple = ()

    def as_dict(self) -> dict:
        return {"model": "logit p' = a + b·logit p + c·log((1 − q) / q) + u_stratum + offset, q the rank share; "
                         "weighted by the design (1 / inclusion probability), prior N((0, 1, 0), diag(3², 1², 1²)) "
                         "on (a, b, c), N(0, 1) on each stratum's u",
                "coef": list(self.coef), "stratum_effects": list(self.group_effects), "offset": self.offset,
                "n": self.n, "n_wrong": self.n_wrong, "target_rate": self.target}


GROUP_SD = 1.0  # prior sd of a stratum's own log-odds effect: lets the rates of the strata bend the curve


def recalibrate(p: np.ndarray, rank: np.ndarray, rows: np.ndarray, wrong: np.ndarray,
                weights: np.ndarray | None = None, target: float | None = None,
                groups: np.ndarray | None = None) -> tuple[np.ndarray, Recalibration]:
    """p(mislabeled) for every sample from verified outcomes: a logistic regression of ``wrong`` on
    the audit's ``logit p`` and its rank (:func:`rank_logit`), each answer weighted by ``weights``
    (the inverse of its inclusion probability under the review's design; None: equal), so that a draw
    that over-samples the top of the ranking does not over-state the error rate below it. Maximum a
    posteriori under a normal prior centred on "the audit's p is right" (``RECAL_PRIOR_*``). With
    ``groups`` (N,) (the review's strata) each group also gets its own log-odds effect, prior
    N(0, GROUP_SD²): a straight line in the rank's log-odds rarely fits the top of a ranking and its
    bulk at once, and the answers in each stratum say how far to bend it. Found by Newton's method (the objective is concave). The weights are scaled to sum to the number of
    answers, so the prior weighs as much against 200 answers whatever N is. With ``target``, an offset
    on the log-odds then makes the mean of p' over all N samples equal it (the stratified estimate of
    the dataset's rate), so the per-sample, per-class and dataset numbers agree.

    The verified samples themselves get what was verified (1 wrong, 0 right). The recalibrated p' is
    monotone in the score within equal p whenever c ≥ 0. Returns (p' (N,), Recalibration).
    """
    from scipy.special import expit

    rows = np.asarray(rows, dtype=np.int64)
    y = np.asarray(wrong, dtype=np.float64)
    if len(rows) == 0:
        raise ValueError("recalibrate needs at least one verified sample")
    if len(y) != len(rows):
        raise ValueError(f"rows ({len(rows)}) and wrong ({len(y)}): expected equal lengths")
    w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != len(rows) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights: expected one positive, finite weight per verified sample")
    w = w * len(w) / w.sum()
    columns = [np.ones(len(p)), clipped_logit(p), rank_logit(rank)]
    mean, sd = list(RECAL_PRIOR_MEAN), list(RECAL_PRIOR_SD)
    if groups is not None:
        groups = np.asarray(groups, dtype=np.int64)
        for g in range(int(groups.max()) + 1):
            columns.append((groups == g).astype(np.float64))
            mean.append(0.0)
            sd.append(GROUP_SD)
    x_all = np.column_stack(columns)
    x = x_all[rows]
    prior_mean = np.asarray(mean)
    precision = 1.0 / np.asarray(sd) ** 2
    beta = prior_mean.copy()

    def objective(b: np.ndarray) -> float:
        eta = x @ b
        return float(np.sum(w * (y * eta - np.logaddexp(0.0, eta))) - 0.5 * np.sum(precision * (b - prior_mean) ** 2))

    current = objective(beta)
    for _ in range(100):
        q = expit(x @ beta)
        grad = x.T @ (w * (y - q)) - precision * (beta - prior_mean)
        hess = (x * (w * q * (1.0 - q))[:, None]).T @ x + np.diag(precision)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6:  # step halving keeps every step an ascent
            trial = objective(beta + scale * step)
            if trial >= current - 1e-12:
                break
            scale /= 2.0
        beta, previous, current = beta + scale * step, current, trial
        if abs(current - previous) < 1e-10:
            break
    eta_all = x_all @ beta
    offset = 0.0
    if target is not None:  # the verified samples count as what was verified, the others as p'
        open_ = np.ones(len(p), dtype=bool)
        open_[rows] = False
        known = float(y.sum())
        goal = float(np.clip(target * len(p) - known, 1e-9, max(open_.sum() - 1e-9, 1e-9)))
        offset = offset_for_sum(eta_all[open_], goal) or 0.0
    p_new = expit(eta_all + offset)
    p_new[rows] = y
    return p_new, Recalibration(tuple(float(b) for b in beta[:3]), offset, int(len(rows)), int(y.sum()), target,
                                tuple(float(b) for b in beta[3:]))
