"""A trusted set: a few samples whose labels someone verified by hand (IEG's probe data).

Implemented from Zhang et al., CVPR 2020 (IEG, ../shared/papers/ieg_trusted_set.txt) and the use of
curated labels on Clothing1M in Patrini et al., CVPR 2017, Sec. 5.3:

- :func:`pair_transition` — T estimated directly from (verified, given) pairs, as Patrini estimate
  Clothing1M's T from the images that carry both a noisy and a curated label (Sec. 5.3), and
  :func:`combine_transition`, which combines it with the audit's own estimate: each row's pair counts
  update a Dirichlet prior centred on the audit's row, whose strength α is weighed by how well the
  pairs agree with the audit (α integrated over its posterior): 10 pairs of a class say little next
  to an audit of thousands of samples unless they contradict it.
- :func:`calibrate` — the trusted samples that are also in the data re-estimate the noise model's
  prior: a mixture posterior p = π f₁ / (π f₁ + (1 − π) f₀) with its mixing weight π moved to π' is
  ``logit p' = logit p + a`` with ``a = logit π' − logit π``, so one shift a, fitted to the verified
  (wrong or right) outcomes, recalibrates every p(mislabeled), the noise rates, the flags, the
  weights and the count estimate of T together. Unsupervised mixtures mis-weigh their components when
  the score distributions are not Gaussian (the over-estimates at low noise in docs/scores.md); the
  shift corrects that with the few labels there are, and keeps the audit's ranking.
- :func:`check_audit` — how the audit did on the trusted samples whose given label is known.
- :func:`sharpen` and :func:`augmented_pseudo_labels` — IEG Eq. 3: the prediction averaged over K
  augmentations of the input, sharpened with temperature τ = 0.5.

The trusted file is a manifest (``path,label``) read like any other (sources.list_manifest); a path may
also be in the main data (then its given label there is known) or not (an extra verified image).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import DataError, UsageError

TAU = 0.5  # IEG's sharpening temperature (Sec. 4.1)
SHIFT_PRIOR_SD = 3.0  # prior N(0, 3²) on the log-odds shift: keeps it finite when every verified label agrees
P_CLIP = 1e-6  # posteriors are clipped to [1e-6, 1 − 1e-6] before the logit (mixtures underflow to 0 and 1)
Z95 = 1.959963984540054


@dataclass
class TrustedSet:
    """Verified samples: ``labels`` (M,) class indices, ``images`` (M, S, S, 3) uint8, and for each the
    row of the main data it also is (``in_data`` ≥ 0) or −1, and its given label there (``given``, or −1)."""

    samples: pd.DataFrame  # path, verified_label
    labels: np.ndarray
    images: np.ndarray
    in_data: np.ndarray
    given: np.ndarray
    source: str

    @property
    def inside(self) -> np.ndarray:
        """(M,) bool: which trusted samples are also in the main data (their given label is known)."""
        return self.in_data >= 0

    def verified_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the trusted samples in the data: their rows of the main data, their verified labels, and
        whether the given label is wrong (verified ≠ given)."""
        inside = self.inside
        return self.in_data[inside], self.labels[inside], self.labels[inside] != self.given[inside]

    def counts(self, k: int) -> np.ndarray:
        """Trusted samples per class (K,)."""
        return np.bincount(self.labels, minlength=k)

    def require_every_class(self, classes: list[str], method: str) -> None:
        """UsageError naming the classes without a trusted sample, for a method that needs them all."""
        missing = [c for c, n in zip(classes, self.counts(len(classes))) if n == 0]
        if missing:
            raise UsageError(f"--trusted {self.source}: {method} needs at least one trusted sample of every class; "
                             f"none for {', '.join(missing[:5])}{'…' if len(missing) > 5 else ''} "
                             f"({len(missing)} class(es)); add some, or leave out {method}")


def load_trusted(path: str | os.PathLike, *, classes: list[str], data_files: Sequence[str], data_labels: np.ndarray,
                 image_size: int, workers: int, cache_dir: Path | None, root: str | os.PathLike | None = None,
                 allow_outside_root: bool = False, path_column: str = "path",
                 label_column: str = "label") -> TrustedSet:
    """Read, decode and match a trusted manifest.

    ``data_files``: the main data's files (absolute or relative to the working folder), one per row
    of its samples, and ``data_labels`` their given labels (class indices), to find which trusted
    samples are also main samples and what label they were given there. Raises UsageError for a
    label that is not one of ``classes``, DataError when a trusted image cannot be read (a hand-checked
    set should be fixed, not silently shrunk).
    """
    from .dataset import decode_cached
    from .sources import list_manifest

    where = {os.path.normpath(os.path.abspath(f)): i for i, f in enumerate(data_files)}
    # the main data's own images may be named anywhere (a worksheet from `export --mode verify` names
    # them absolutely); any other path outside the trusted file's folder is refused as for a manifest
    listing = list_manifest(path, root=root, path_column=path_column, label_column=label_column,
                            allow_outside_root=allow_outside_root, option="--trusted", known_files=where)
    if len(listing.errors):
        first = listing.errors.iloc[0]
        raise DataError(f"--trusted {path}: {len(listing.errors)} row(s) cannot be used (first: {first['path']!r}: "
                        f"{first['error']}); fix the trusted file")
    if len(listing.samples) == 0:
        raise UsageError(f"--trusted {path}: no rows; list verified samples as path,label")
    index = {c: k for k, c in enumerate(classes)}
    unknown = sorted(set(listing.samples["given_label"]) - set(index))
    if unknown:
        raise UsageError(f"--trusted {path}: label(s) {', '.join(map(repr, unknown[:5]))} are not classes of the "
                         f"data ({', '.join(classes[:8])}{'…' if len(classes) > 8 else ''}); use the data's class names")
    # decoded by the main data's stage (same cache); not load_dataset: its two-class floor does not apply here
    decoded = decode_cached(listing.samples["file"].tolist(), image_size=image_size, workers=workers,
                            cache_dir=cache_dir)
    bad = [(p, e) for p, e in zip(listing.samples["path"], decoded.errors) if e is not None]
    if bad:
        raise DataError(f"--trusted {path}: {len(bad)} image(s) cannot be read (first: {bad[0][0]!r}: {bad[0][1]}); "
                        "fix or remove them")
    files = [os.path.normpath(os.path.abspath(f)) for f in listing.samples["file"]]
    in_data = np.array([where.get(f, -1) for f in files], dtype=np.int64)
    labels = listing.samples["given_label"].map(index).to_numpy(dtype=np.int64)
    samples = pd.DataFrame({"path": listing.samples["path"].astype(str),
                            "verified_label": listing.samples["given_label"].astype(str)})
    given = np.where(in_data >= 0, np.asarray(data_labels, dtype=np.int64)[np.maximum(in_data, 0)], -1)
    return TrustedSet(samples, labels, decoded.images, in_data, given, str(path))


def pair_transition(verified: np.ndarray, given: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """T from (verified, given) label pairs: ``T[i, j] = #(verified = i, given = j) / #(verified = i)``.

    Patrini Sec. 5.3 (Clothing1M: T from the images with both labels). Pairs with ``given < 0`` (a
    trusted image that is not in the main data) carry no information on the noise and are left out.
    Returns (T (K, K), with NaN rows where a class has no pair; pairs per class (K,)).
    """
    verified, given = np.asarray(verified, dtype=np.int64), np.asarray(given, dtype=np.int64)
    ok = given >= 0
    counts = np.zeros((k, k), dtype=np.float64)
    np.add.at(counts, (verified[ok], given[ok]), 1.0)
    n = counts.sum(axis=1)
    t = np.full((k, k), np.nan)
    t[n > 0] = counts[n > 0] / n[n > 0, None]
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


def _clipped_logit(p: np.ndarray) -> np.ndarray:
    from scipy.special import logit

    return logit(np.clip(np.asarray(p, dtype=np.float64), P_CLIP, 1.0 - P_CLIP))


def shift_posteriors(p: np.ndarray, shift: float) -> np.ndarray:
    """``σ(logit p + shift)``: the posteriors of the same mixture with its prior odds times e^shift."""
    from scipy.special import expit

    return expit(_clipped_logit(p) + shift)


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
    ell_all = _clipped_logit(p)  # once: the shift, the posteriors and both interval ends all start from it
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


def check_audit(verified: np.ndarray, given: np.ndarray, flagged: np.ndarray) -> dict:
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


def sharpen(probs, tau: float = TAU):
    """IEG Eq. 3's sharpening: ``p_i^(1/τ) / Σ_j p_j^(1/τ)`` along the last axis (NumPy or torch)."""
    powered = probs ** (1.0 / tau)
    return powered / powered.sum(-1, keepdims=True) if isinstance(probs, np.ndarray) \
        else powered / powered.sum(-1, keepdim=True)


def pseudo_label(model, batch, normalise, augment: str, k: int, generator, *, first=(), autocast=None,
                 tau: float = TAU):
    """IEG Eq. 3 for one uint8 batch (B, 3, S, S): ``g(x) = sharpen((Φ(x) + Σ_{k=1}^{K−1} Φ(x̂_k)) / K, τ)``,
    Φ the softmax of ``model`` and x̂_k random augmentations (augment.py). ``first``: Φ of the views the
    caller already has (train's augmented batch, and its strong view with IEG Sec. 4.2), counted towards
    K; without them, Φ of the un-augmented batch is the first view. No gradients; the model's mode is the
    caller's. → (B, K) float."""
    import contextlib

    import torch

    from .augment import augment_batch

    autocast = autocast or contextlib.nullcontext()

    def softmax(x):
        with autocast:
            return torch.softmax(model(normalise(x)).float(), dim=1)

    views = list(first)
    with torch.no_grad():
        total = sum(v.detach().float() for v in views) if views else softmax(batch)
        for _ in range(k - max(len(views), 1)):
            total = total + softmax(augment_batch(batch, augment, generator))
    return sharpen(total / max(k, len(views)), tau)


def augmented_pseudo_labels(model, images, normalise, augment: str, k: int, generator, batch_size: int,
                            autocast, tau: float = TAU):
    """:func:`pseudo_label` of every image (N, 3, S, S) uint8, the model in eval mode, in batches → (N, K)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        return torch.cat([pseudo_label(model, images[ids], normalise, augment, k, generator, autocast=autocast,
                                       tau=tau)
                          for ids in torch.arange(images.shape[0], device=images.device).split(batch_size)])
    finally:
        model.train(was_training)
