"""What verified answers say about the whole audit: stratified estimates with intervals.

For a domain d (the whole dataset, one given class, the flagged samples) the error rate is
``Σ_h N_hd · ȳ_hd / N_d``: the answered share of errors in each stratum h (sampling.py) within the
domain, weighted by how many of the domain's samples the stratum holds (known for every sample, not
only the answered ones). That is the stratified (Horvitz–Thompson) estimator, post-stratified by the
domain (Cochran, Sampling Techniques, Sec. 5A.14): design-unbiased whatever the audit's ranking got
wrong. A stratum with no answer in the domain borrows the stratum's rate over all domains.

The interval: each cell's rate gets a Jeffreys posterior, Beta(errors + ½, correct + ½), the
weighted sum is drawn many times and its percentiles are the interval, with Brown, Cai & DasGupta's
modification (2001, Sec. 4.1.2): for the lower limit a cell without errors counts at 0, for the
upper a cell of errors only at 1 (the Jeffreys posterior of 0 errors in 50 has mean 1%, and large,
clean strata summed at that would lift the lower limit above a truth of 0 errors there). Unlike the normal
approximation it never collapses to [0, 0] when every answer in a stratum agrees with the given
label, and a stratum nobody answered stays as uncertain as it is (Beta(½, ½)). A stratum answered in
full is known exactly. An answer ``none`` (an image of no class) counts as an error and is also
estimated on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .sampling import Design

LEVEL = 0.95
DRAWS = 20_000


@dataclass(frozen=True)
class Estimate:
    """A rate with its interval and the answers it rests on."""

    value: float
    low: float
    high: float
    n_answers: int

    def as_dict(self) -> dict:
        return {"value": self.value, "interval": [self.low, self.high], "n_answers": self.n_answers}


@dataclass(frozen=True)
class ReviewEstimates:
    """The review's estimates: ``rate`` of label errors (``none`` answers included), ``no_class`` the
    share of images of no class, ``classes`` each given class's rate, ``precision`` the share of the
    flagged samples that are label errors (None without flags)."""

    rate: Estimate
    no_class: Estimate
    classes: dict = field(default_factory=dict)
    precision: Estimate | None = None


def domain_rate(design: Design, rows: np.ndarray, y: np.ndarray, domain: np.ndarray | None = None, *,
                level: float = LEVEL, draws: int = DRAWS, seed: int = 0) -> Estimate:
    """The stratified rate of ``y`` over ``domain`` (N,) bool (None: every sample), from the answered
    samples ``rows`` (n,) with outcomes ``y`` (n,) bool. See the module docstring."""
    rows, y = np.asarray(rows, dtype=np.int64), np.asarray(y, dtype=bool)
    n_strata = len(design.sizes)
    member = np.ones(len(design.stratum), dtype=bool) if domain is None else np.asarray(domain, dtype=bool)
    big_n = np.bincount(design.stratum[member], minlength=n_strata).astype(np.float64)  # N_hd
    if big_n.sum() == 0:
        raise ValueError("domain: holds no sample")
    h_of = design.stratum[rows]
    # the stratum's own answers (every domain), for cells nobody in the domain answered
    n_h = np.bincount(h_of, minlength=n_strata).astype(np.float64)
    s_h = np.bincount(h_of, weights=y, minlength=n_strata)
    in_d = member[rows]
    n_hd = np.bincount(h_of[in_d], minlength=n_strata).astype(np.float64)
    s_hd = np.bincount(h_of[in_d], weights=y[in_d], minlength=n_strata)
    own = n_hd > 0
    n_cell, s_cell = np.where(own, n_hd, n_h), np.where(own, s_hd, s_h)
    mean = np.where(n_cell > 0, s_cell / np.maximum(n_cell, 1), 0.5)
    weights = big_n / big_n.sum()
    value = float((weights * mean).sum())
    census = own & (n_hd >= big_n)  # every domain sample of the stratum answered: known exactly
    rng = np.random.default_rng(seed)
    theta = rng.beta(s_cell + 0.5, n_cell - s_cell + 0.5, size=(draws, n_strata))
    theta[:, census] = mean[census]
    alpha = (1.0 - level) / 2.0
    # modified Jeffreys (Brown, Cai & DasGupta 2001, Sec. 4.1.2): a cell with no error has lower limit
    # 0 and a cell of errors only has upper limit 1, so those cells sit at their bound on that side
    low = float(np.quantile(np.where(s_cell == 0, 0.0, theta) @ weights, alpha))
    high = float(np.quantile(np.where(s_cell == n_cell, 1.0, theta) @ weights, 1.0 - alpha))
    return Estimate(value, float(min(low, value)), float(max(high, value)), int(in_d.sum()))


def estimate(design: Design, rows: np.ndarray, wrong: np.ndarray, *, none: np.ndarray | None = None,
             given: np.ndarray | None = None, classes: list[str] | None = None, flags: np.ndarray | None = None,
             level: float = LEVEL, seed: int = 0) -> ReviewEstimates:
    """Every estimate the answers support. ``rows`` (n,) the answered samples, ``wrong`` (n,) whether
    the verified label differs from the given one (``none`` answers are wrong), ``none`` (n,) whether
    the answer was "no class"; ``given`` (N,) class indices and ``classes`` their names for the
    per-class rates; ``flags`` (N,) the audit's is_label_issue for the flags' precision."""
    rows = np.asarray(rows, dtype=np.int64)
    wrong = np.asarray(wrong, dtype=bool)
    none = np.zeros(len(rows), dtype=bool) if none is None else np.asarray(none, dtype=bool)
    if not (len(rows) == len(wrong) == len(none)):
        raise ValueError(f"rows ({len(rows)}), wrong ({len(wrong)}) and none ({len(none)}): expected equal lengths")
    if len(np.unique(rows)) != len(rows):
        raise ValueError("rows: a sample is answered twice; keep one answer per sample")
    kw = dict(level=level, seed=seed)
    per_class = {}
    if given is not None:
        given = np.asarray(given, dtype=np.int64)
        names = classes or [str(c) for c in range(int(given.max()) + 1)]
        per_class = {name: domain_rate(design, rows, wrong, given == c, **kw)
                     for c, name in enumerate(names) if (given == c).any()}
    precision = None
    if flags is not None and np.asarray(flags, dtype=bool).any():
        precision = domain_rate(design, rows, wrong, np.asarray(flags, dtype=bool), **kw)
    return ReviewEstimates(domain_rate(design, rows, wrong, **kw), domain_rate(design, rows, none, **kw),
                           per_class, precision)
