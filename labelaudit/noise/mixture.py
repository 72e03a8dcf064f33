"""Stage 5 — noise model: scores → p(mislabeled), the dataset noise rate and per-class rates.

Two estimators, both Gaussian mixtures from scikit-learn; both report the dataset noise rate as the
mean posterior and a class's rate as the mean posterior among the samples *given* that label (AUL
paper, Sec. 4.1).

``margin`` (default) — a mixture on AUM with a meaning attached to each component. A sample whose
average margin is negative is one the network, over the whole run, preferred another class for:
that is what a mislabeled sample looks like, and what a clean one — however hard — does not look
like on average. So the mixture has 1 to MAX_COMPONENTS components, chosen by BIC: a clean
distribution is skewed, with a long tail of hard samples, and needs two components of its own, and
where the proxy learns some classes far more surely than others (a small set, one easy class) each
class's margins form a mode of their own, which takes a component each before a small group of
mislabeled samples gets one. p(mislabeled) is the posterior mass of the components whose mean margin
is below zero. On clean data no component sits below zero and the estimate is 0, where a plain
2-component fit reports 40–65% (measured on scikit-learn digits, see docs/scores.md).

A component whose mean lies within one standard deviation of zero is *undecided*: more than 16% of
its mass is on either side, so the sign rule cannot call its samples. Its mean's side still
decides the estimate (every other rule measured was worse on the development cases, docs/scores.md),
but the fit then also reports ``model_range``: the rate with the undecided components counted clean,
and counted mislabeled — how far the choice alone could move the estimate. The proxy's stopping rule
waits while a component is undecided (proxy.memorisation_check).

Images of *no* class (junk, blanks, things outside the label set) break the sign rule: no other class
claims them, so the network memorises them into whatever label they carry and their margin ends
positive. Given the labels, the fit also counts a component as mislabeled when it sits far below the
heaviest one (Ashman's D ≥ NO_CLASS_SEPARATION), its samples' given labels spread over the classes
as the whole set's do, and, given each sample's early agreement (:func:`early_agreement`), the
network agreed with those labels in its first epochs hardly more often than chance
(:func:`no_class_components`). A hard class is one label, junk labelled at random is all of them;
and a hard but correctly labelled image is agreed with early more often than a label chosen without
regard to the image. Images so degraded that no class can be read from them are counted too
(docs/scores.md, "The noise model").

``aul-gmm`` — the AUL paper's recipe: a 2-component mixture on AUL, p(mislabeled) = posterior of
the high-mean component, kept only when BIC prefers two components to one. It overestimates on
class-dependent noise and on clean data; offered for comparison with the paper.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits



@dataclass(frozen=True)
class NoiseFit:
    """A fitted noise model. ``p_mislabeled`` (N,) in [0, 1]; ``noise_rate`` = its mean."""

    p_mislabeled: np.ndarray
    noise_rate: float
    method: str  # how the estimate was made, in words, for run.json and the summary
    details: dict = field(default_factory=dict)
    interval: tuple[float, float] | None = None  # 95% bootstrap interval of noise_rate
    model_range: tuple[float, float] | None = None  # the rate with undecided components counted clean / mislabeled
    draws: np.ndarray | None = field(default=None, compare=False)  # the bootstrap rounds' rates behind interval


BOOTSTRAP_ROUNDS = 50
BOOTSTRAP_LEVEL = 0.95
UNDECIDED_Z = 1.0  # a component with |mean| < UNDECIDED_Z · std straddles zero (> 16% of its mass on each side)
# BIC chooses among 1..MAX_COMPONENTS. On the development cases it never picks more than 3 at the
# auto stop (every estimate and auto stop the same at 3, 6, 8 and 10); on margins with one mode per
# class it needs up to K + 1, and a cap of 3 then counts 5 clear errors in 180 images as 0
# (docs/scores.md, "More components"). A fit on 10,000 values took 0.70 s at 10, 0.12 s at 3 (2 CPU
# cores): ~9 s more over the stopping checks of a 10k scan.
MAX_COMPONENTS = 10
MIN_SAMPLES = 6  # fewer AUM values than this: p = 1 where the margin is negative, no mixture
# Above this many values BIC chooses the number of components on a fixed random draw of this size and the
# bootstrap resamples this many (m-out-of-n): the final fit on 10⁶ values 125.4 s → 9.7 s (2 cores,
# `python benchmarks/mixture_scale.py`); at or below it nothing changes.
SELECT_SAMPLES = 100_000
# EM starts: each candidate gets SELECT_INITS (k-means starts, sklearn's ``n_init``), the one BIC
# chooses is fitted again with REFIT_INITS and the better fit kept. With 2 starts alone, EM ended in a
# worse optimum for 2 of 6 seeds on CIFAR-10N random_label1 10k (log-likelihood 3 nats lower, rate
# 0.186 against 0.202 ± 0.002), and CIFAR uniform 5% and worse_label likewise (0.170 vs 0.157,
# 0.390 vs 0.379); with 10 the rate agrees within 0.003 over seeds 0–5 on every development case, and
# BIC's choice of k did not move with the starts (docs/scores.md, "EM's starting points").
SELECT_INITS = 2
REFIT_INITS = 10
REG_COVAR = 1e-6  # added to every variance, so a component on a few identical margins cannot collapse
# A component of images of no class (junk, blanks, other things): positive mean but far below the
# bulk (Ashman's D from the heaviest component ≥ NO_CLASS_SEPARATION) and given labels spread like the
# dataset's: their total variation from the class prior below NO_CLASS_SPREAD × (1 − the largest class
# prior), the least a group of one label can have (a class the proxy learns less surely is one label).
# Relative, so that on imbalanced data the hard part of a large class (TV = 1 − its prior, small) is
# not taken for junk; 1/3 gives 0.30 on 10 balanced classes. Chosen on the junk digits (0.000 → 0.140
# for 0.131, its group at TV 0.077); every other development case unchanged for D in 2–4 and an
# absolute TV limit of 0.3–0.5 (docs/scores.md).
NO_CLASS_SEPARATION = 3.0
NO_CLASS_SPREAD = 1.0 / 3.0
# Early agreement: the share of a sample's first EARLY_EPOCHS epochs whose margin is positive (the
# network predicted the given label). Before a network memorises, it agrees with a label chosen without
# regard to the image about as often as chance, c = Σ_k prior_k² (two independent draws from the class
# prior; 1/K when balanced). A group of no class must be agreed with early less often than
# c + NO_CLASS_EARLY · (1 − c): 0.19 for 10 balanced classes. Measured in epochs 1–2
# (`python benchmarks/no_class_components.py`): the junk and chimera digits 0.135 and 0.075; the hard
# clean CIFAR-10 images the labels-only rule took for junk at 50k, 0.246 and 0.332 (5% and 10% noise).
EARLY_EPOCHS = 2
NO_CLASS_EARLY = 0.1


def early_agreement(margin: np.ndarray) -> np.ndarray:
    """(N,) share of the first EARLY_EPOCHS epochs in which a sample's margin was positive (its given
    label predicted), from ``margin`` (E, N), the per-epoch margins (all of them when E is smaller)."""
    margin = np.asarray(margin)
    return (margin[:EARLY_EPOCHS] > 0).mean(axis=0)


def no_class_components(means: np.ndarray, stds: np.ndarray, weights: np.ndarray, post: np.ndarray,
                        given: np.ndarray, early: np.ndarray | None = None) -> np.ndarray:
    """(k,) bool: components of images that belong to no class. Such images, memorised into whatever
    label they carry, end with a positive margin, so the sign rule counts them clean; but the proxy
    fits them far less surely than the real images (a group well below the bulk), and their labels
    are whatever the labeller picked, so they spread over the classes as the whole set does — unlike a
    hard class, whose samples share one label. Spread: the total variation between the group's given
    labels (each sample to its most probable component) and the class prior, below NO_CLASS_SPREAD
    times the least a group of one label can have, 1 − the largest prior. With ``early`` (N,), each
    sample's early agreement (:func:`early_agreement`), the group's mean must also be below
    c + NO_CLASS_EARLY · (1 − c), c = Σ_k prior_k² the agreement with labels drawn at random: images of
    no class are memorised late, hard images of a class are learned in part from the start (the
    labels-only rule took a fifth of CIFAR-10's clean images for junk at 50k). ``post`` (N, k)
    posteriors; ``given`` (N,) class indices."""
    top = int(np.argmax(weights))
    member = post.argmax(axis=1)
    k_classes = int(given.max()) + 1 if len(given) else 0
    prior = np.bincount(given, minlength=k_classes) / max(len(given), 1)
    limit = NO_CLASS_SPREAD * (1.0 - prior.max()) if k_classes else 0.0
    chance = float((prior ** 2).sum())
    early_limit = chance + NO_CLASS_EARLY * (1.0 - chance)
    out = np.zeros(len(means), dtype=bool)
    for c in range(len(means)):
        in_c = member == c
        mine = given[in_c]
        if c == top or not len(mine) or not 0 <= means[c] < means[top]:
            continue
        separation = (means[top] - means[c]) * np.sqrt(2.0 / (stds[c] ** 2 + stds[top] ** 2))
        spread = 0.5 * np.abs(np.bincount(mine, minlength=k_classes) / len(mine) - prior).sum()
        late = early is None or float(np.mean(early[in_c])) < early_limit
        out[c] = separation >= NO_CLASS_SEPARATION and spread < limit and late
    return out


def _mixture(k: int, random_state: int, **options) -> GaussianMixture:
    """An unfitted k-component mixture as every fit here makes it (REG_COVAR, seeded)."""
    return GaussianMixture(k, random_state=random_state, reg_covar=REG_COVAR, **options)


def _started_from(g: GaussianMixture, random_state: int, **options) -> GaussianMixture:
    """An unfitted mixture that EM starts from the fitted ``g`` (its k, weights, means, precisions), so
    component k of the new fit stays component k of ``g``."""
    return _mixture(g.n_components, random_state, means_init=g.means_, weights_init=g.weights_,
                    precisions_init=g.precisions_, **options)


def _fit_all(models: list[GaussianMixture], xs: list[np.ndarray]) -> list[GaussianMixture]:
    """Fit independent mixtures side by side, one thread per CPU core (numpy's EM releases the GIL).
    The results are those of fitting them one after another: each fit is seeded by its own
    ``random_state``, and BLAS is single-threaded for the whole pool (the limit is process-wide, so it
    is set once here, not per fit; with multi-threaded BLAS a fit differs in the 14th digit with the
    number of threads). Timings: ``python benchmarks/mixture_scale.py``."""
    jobs = max(1, min(len(models), os.cpu_count() or 1))
    with threadpool_limits(1, user_api="blas"):
        if jobs == 1:
            return [m.fit(x) for m, x in zip(models, xs)]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(lambda m, x: m.fit(x), models, xs))


NO_CLASS_KINDS = "junk, blanks, images outside the label set, or images too degraded to read"


def no_class_note(n: int, subject: str = "of them") -> str:
    """What the summary and report.html say when the rate counts ``n`` samples as images of no class."""
    return (f"About {n:,} {subject} look like images of no class: a group far below the rest whose given "
            f"labels spread over every class ({NO_CLASS_KINDS}). The proxy memorised them, so their predicted "
            f"label is mostly their given one: review them, and remove rather than relabel those that fit no class")


def no_class_count(details: dict | None, n_samples: int) -> int:
    """How many of ``n_samples`` the fit's components of images of no class hold (their weight × N), from
    a fit's ``details`` as run.json keeps them (``noise_model``); 0 when there are none."""
    details = details or {}
    share = sum(w for w, f in zip(details.get("weights") or [], details.get("no_class") or []) if f)
    return int(round(share * n_samples))


def percentile_interval(rates: np.ndarray, level: float = BOOTSTRAP_LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of ``rates`` (bootstrap rounds, of one fit or pooled over several)."""
    lo, hi = np.quantile(np.asarray(rates, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_rates(x: np.ndarray, gmm: GaussianMixture, noisy: np.ndarray, *, rounds: int = BOOTSTRAP_ROUNDS,
                    random_state: int = 0, max_samples: int | None = None) -> np.ndarray:
    """The noise rate of each of ``rounds`` bootstrap resamples of the samples, (rounds,).

    Each round draws N samples with replacement, refits the chosen mixture (same number of
    components, started from the fitted one, so component k stays component k) and takes the mean
    posterior of the components ``noisy`` marks as mislabeled. It measures how much the estimate
    moves with the sample, given the model; it does not include the uncertainty of choosing the
    number of components.

    Above ``max_samples`` (default SELECT_SAMPLES) each round draws m = max_samples instead of N (the
    m-out-of-n bootstrap, Bickel, Götze & van Zwet 1997): the rate is a mean, its spread shrinks as
    1/√N, so each round's deviation from the full-data rate is scaled by √(m/N). A round on 10⁶
    values costs about 2.7 s; on 10⁵, a tenth of that.
    """
    rng = np.random.default_rng(random_state)
    n = len(x)
    m = min(n, SELECT_SAMPLES if max_samples is None else max_samples)
    samples = [x[rng.integers(0, n, m)] for _ in range(rounds)]
    fits = _fit_all([_started_from(gmm, random_state, max_iter=100) for _ in range(rounds)], samples)
    rates = np.array([g.predict_proba(xb)[:, noisy].sum(axis=1).mean() for g, xb in zip(fits, samples)])
    if m < n:
        full = float(gmm.predict_proba(x)[:, noisy].sum(axis=1).mean())
        rates = full + np.sqrt(m / n) * (rates - full)
    return rates


def _fit_best(x: np.ndarray, max_components: int, random_state: int) -> tuple[GaussianMixture, list[float]]:
    """The GaussianMixture with 1..max_components components that has the lowest BIC.

    Each candidate is fitted from SELECT_INITS EM starts; the chosen one is fitted again from
    REFIT_INITS starts and the fit with the higher likelihood kept, so the rate is that of EM's best
    optimum, not of its first (the refit costs about half what the ten candidates' selection does).

    Above SELECT_SAMPLES values BIC compares the candidates on a fixed random draw of SELECT_SAMPLES,
    and the chosen one is then refitted on all of ``x``, started from its fit on the draw (on 10⁶
    synthetic margins the selection takes 8.5 s instead of 72 s; the BIC values returned are the
    draw's). At or below it, every candidate is fitted on all of ``x``.
    """
    sel = x
    if len(x) > SELECT_SAMPLES:
        sel = x[np.sort(np.random.default_rng(random_state).choice(len(x), SELECT_SAMPLES, replace=False))]
    fits = _fit_all([_mixture(k, random_state, n_init=SELECT_INITS) for k in range(1, max_components + 1)],
                    [sel] * max_components)
    bics = [float(g.bic(sel)) for g in fits]
    best = fits[int(np.argmin(bics))]
    if best.n_components > 1:  # the chosen k again, from more starts: EM's optimum, not its first find
        again = _fit_all([_mixture(best.n_components, random_state, n_init=REFIT_INITS)], [sel])[0]
        if again.score(sel) > best.score(sel):
            best = again
            bics[best.n_components - 1] = float(best.bic(sel))
    if sel is not x:
        best = _fit_all([_started_from(best, random_state)], [x])[0]
    return best, bics


def fit_margin_mixture(aum_scores: np.ndarray, *, given: np.ndarray | None = None,
                       early: np.ndarray | None = None, max_components: int = MAX_COMPONENTS,
                       random_state: int = 0, interval: bool = True) -> NoiseFit:
    """p(mislabeled) = posterior mass of the mixture components with a negative mean AUM, and, with the
    given labels ``given`` (N,), of the components of images of no class (:func:`no_class_components`;
    ``early`` (N,), each sample's :func:`early_agreement`, keeps hard clean images out of them).

    aum_scores: (N,) mean logit margins (lower = more suspicious). The number of components
    (1..max_components, at most one per two samples) is chosen by BIC. ``interval=False`` skips the
    bootstrap (NoiseFit.interval is None): the proxy's stopping rule refits every epoch and needs the
    rate only.
    """
    x = np.asarray(aum_scores, dtype=np.float64).reshape(-1, 1)
    n = len(x)
    if n < MIN_SAMPLES or np.ptp(x) == 0:
        p = (x.ravel() < 0).astype(np.float64)
        return NoiseFit(p, float(p.mean()) if n else 0.0, "margin sign: too few samples for a mixture", {})
    gmm, bics = _fit_best(x, min(max_components, n // 2), random_state)
    means, stds = gmm.means_.ravel(), np.sqrt(gmm.covariances_.ravel())
    undecided = np.abs(means) < UNDECIDED_Z * stds
    post = gmm.predict_proba(x)
    early = None if early is None or len(early) != n else np.asarray(early, dtype=np.float64)
    no_class = (no_class_components(means, stds, gmm.weights_, post, np.asarray(given, dtype=np.int64), early)
                if given is not None and len(given) == n else np.zeros(len(means), dtype=bool))
    noisy = (means < 0) | no_class
    p = post[:, noisy].sum(axis=1)
    order = np.argsort(means)
    details = {"n_components": int(gmm.n_components), "bic": bics,
               "means": means[order].tolist(), "stds": stds[order].tolist(),
               "weights": gmm.weights_[order].tolist(), "mislabeled": noisy[order].tolist(),
               "mislabeled_components": int(noisy.sum()), "undecided": undecided[order].tolist(),
               "undecided_components": int(undecided.sum()), "no_class": no_class[order].tolist(),
               "no_class_components": int(no_class.sum())}
    method = (f"margin mixture: {gmm.n_components} Gaussian component(s) on AUM chosen by BIC; "
              f"p(mislabeled) = posterior of the {int((means < 0).sum())} component(s) with negative mean margin")
    if no_class.any():
        method += (f" and of the {int(no_class.sum())} component(s) of images of no class (a group far below the rest, its "
                   f"labels spread over the classes{', agreed with early hardly more than chance' if early is not None else ''})")
    model_range = None
    if undecided.any():
        model_range = (float(post[:, noisy & ~undecided].sum(axis=1).mean()),
                       float(post[:, noisy | undecided].sum(axis=1).mean()))
        method += (f"; {int(undecided.sum())} component(s) straddle zero (|mean| < {UNDECIDED_Z:g} std), so the "
                   f"rate could be {model_range[0]:.1%}–{model_range[1]:.1%} by how they are counted")
    bounds = draws = None
    if interval:
        draws = bootstrap_rates(x, gmm, noisy, random_state=random_state) if noisy.any() else np.zeros(BOOTSTRAP_ROUNDS)
        bounds = percentile_interval(draws)
    return NoiseFit(p, float(p.mean()), method, details, bounds, model_range, draws)


def fit_aul_gmm(aul_scores: np.ndarray, *, random_state: int = 0) -> NoiseFit:
    """The AUL paper's Sec. 4.1: 2-component mixture on AUL, p = posterior of the high-mean component
    (z_{x,ỹ}), noise rate = E[z]. Falls back to 0 when BIC prefers a single component."""
    x = np.asarray(aul_scores, dtype=np.float64).reshape(-1, 1)
    n = len(x)
    if n < 4 or np.ptp(x) == 0:
        return NoiseFit(np.zeros(n), 0.0, "aul-gmm: too few distinct scores for a mixture", {})
    gmm, bics = _fit_best(x, 2, random_state)
    if gmm.n_components == 1:
        return NoiseFit(np.zeros(n), 0.0, "aul-gmm: BIC prefers one component, no mislabeled mode", {"bic": bics})
    noisy = gmm.means_.ravel() == gmm.means_.max()
    p = gmm.predict_proba(x)[:, noisy].sum(axis=1)
    draws = bootstrap_rates(x, gmm, noisy, random_state=random_state)
    return NoiseFit(p, float(p.mean()), "aul-gmm: 2 Gaussian components on AUL, p = posterior of the high one "
                    "(AUL paper Sec. 4.1)", {"bic": bics, "means": gmm.means_.ravel().tolist(),
                                             "stds": np.sqrt(gmm.covariances_.ravel()).tolist(),
                                             "weights": gmm.weights_.tolist(),
                                             "mislabeled": noisy.tolist()}, percentile_interval(draws), draws=draws)


NOISE_MODELS = {
    "margin": lambda aul_s, aum_s, seed, given, early: fit_margin_mixture(aum_s, given=given, early=early,
                                                                         random_state=seed),
    "aul-gmm": lambda aul_s, aum_s, seed, given, early: fit_aul_gmm(aul_s, random_state=seed),
}


def fit_noise(name: str, *, aul_scores: np.ndarray, aum_scores: np.ndarray, random_state: int = 0,
              given: np.ndarray | None = None, early: np.ndarray | None = None) -> NoiseFit:
    """Dispatch to a noise model by name (``margin`` | ``aul-gmm``); ``given`` (N,) the given labels,
    ``early`` (N,) each sample's :func:`early_agreement` (the scan passes both)."""
    if name not in NOISE_MODELS:
        raise ValueError(f"name={name!r}: unknown noise model; choose one of {', '.join(NOISE_MODELS)}")
    return NOISE_MODELS[name](aul_scores, aum_scores, random_state, given, early)


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
