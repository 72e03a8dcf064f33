"""The review's design and estimator (labelaudit/review): strata by rank, the compromise allocation, a seeded
draw in random order, and stratified estimates whose intervals hold the truth."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from labelaudit.noise.sampling import FLAG_SHARE, MIN_PER_STRATUM, Design, allocate, draw, strata
from labelaudit.noise.stratified import domain_rate, estimate


def _population(n=10_000, rate=0.09, seed=0):
    """A ranked audit of n samples, a share ``rate`` mislabeled, ranked well but not perfectly."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < rate
    score = truth * rng.normal(2.0, 1.0, n) + rng.normal(0.0, 1.0, n)
    rank = np.argsort(np.argsort(-score)) + 1
    return truth, rank, 1.0 / (1.0 + np.exp(-(score - 2.0)))


def test_strata_follow_the_ranking_at_the_documented_shares():
    truth, rank, p = _population()
    d = strata(rank, p)
    assert d.sizes.tolist() == [100, 200, 700, 1500, 2500, 5000]
    assert (d.stratum[rank <= 100] == 0).all() and (d.stratum[rank > 5000] == 5).all()
    assert np.all(np.diff(d.prior) < 0)  # the audit believes the top strata worse
    small = strata(np.arange(1, 11), np.zeros(10))  # 10 samples: empty strata are left out
    assert small.sizes.sum() == 10 and (small.sizes > 0).all()


def test_allocation_favours_likely_errors_and_samples_every_stratum():
    d = Design(np.repeat(np.arange(3), [100, 100, 800]), np.array([100, 100, 800]), np.array([0.5, 0.1, 0.0]))
    n = allocate(d, 100)
    assert n.sum() == 100 and (n >= MIN_PER_STRATUM).all()
    # Neyman: N_h·sqrt(p(1−p)) with p floored at 0.05: 50, 30, 174.4 → shares of the 94 left after the base
    share = np.array([100 * 0.5, 100 * 0.3, 800 * np.sqrt(0.05 * 0.95)])
    expected = 2 + 94 * share / share.sum()
    assert np.abs(n - expected).max() <= 1.0
    assert n[0] / 100 > n[2] / 800  # more draws per sample where errors are likely
    assert allocate(d, 5).tolist() == [2, 2, 1] and allocate(d, 5000).tolist() == [100, 100, 800]
    with pytest.raises(ValueError, match="n=0"):
        allocate(d, 0)


def test_allocation_is_a_compromise_between_the_rate_and_the_flags_precision():
    # 100 flagged samples, all in the first stratum; p = 0.99 there is taken as 0.8 (σ = 0.4)
    d = Design(np.repeat(np.arange(3), [100, 100, 800]), np.array([100, 100, 800]), np.array([0.99, 0.1, 0.0]),
               flagged=np.array([100, 0, 0]))
    sigma = np.array([0.4, 0.3, np.sqrt(0.05 * 0.95)])
    rate = d.sizes * sigma / (d.sizes * sigma).sum()
    share = (1 - FLAG_SHARE) * rate + FLAG_SHARE * np.array([1.0, 0.0, 0.0])
    n = allocate(d, 100)
    assert n.sum() == 100 and np.abs(n - (2 + 94 * share)).max() <= 1.0
    assert n[0] > allocate(dataclasses.replace(d, flagged=None), 100)[0] + 30  # the flags get their answers
    with pytest.raises(ValueError, match="flags"):
        strata(np.arange(1, 11), np.zeros(10), np.zeros(9, dtype=bool))
    assert strata(np.arange(1, 101), np.zeros(100), np.arange(100) < 5).flagged.tolist() == [1, 2, 2, 0, 0, 0]


def test_the_draw_is_seeded_in_random_order_with_its_inclusion_probabilities():
    truth, rank, p = _population()
    d = strata(rank, p)
    a, b = draw(d, 200, seed=3), draw(d, 200, seed=3)
    assert a.equals(b) and len(a) == 200 and a["row"].is_unique
    assert not (np.diff(rank[a["row"]]) > 0).all()  # not in the ranking's order
    counts = a.groupby("stratum").size()
    assert np.allclose(a["inclusion"], counts[a["stratum"]].to_numpy() / d.sizes[a["stratum"]])


def test_point_estimate_by_hand():
    # two strata of 10 and 90; answered: 2 of 2 wrong in the first, 1 of 4 wrong in the second
    d = Design(np.repeat([0, 1], [10, 90]), np.array([10, 90]), np.array([0.9, 0.1]))
    rows = np.array([0, 1, 10, 11, 12, 13])
    wrong = np.array([True, True, True, False, False, False])
    e = domain_rate(d, rows, wrong)
    assert e.value == pytest.approx(0.1 * 1.0 + 0.9 * 0.25) and e.n_answers == 6
    assert e.low < e.value < e.high
    # a domain (samples 0..4 and 10..59): stratum shares 5/55 and 50/55; the first stratum's answers
    # (rows 0, 1) are both in it, the second's rows 10..13 too
    domain = np.zeros(100, dtype=bool)
    domain[:5] = domain[10:60] = True
    assert domain_rate(d, rows, wrong, domain).value == pytest.approx(5 / 55 * 1.0 + 50 / 55 * 0.25)


def test_answers_that_all_agree_never_give_an_interval_of_zero_width():
    d = Design(np.repeat([0, 1], [50, 950]), np.array([50, 950]), np.array([0.2, 0.01]))
    rows = np.r_[0:10, 50:90]
    e = domain_rate(d, rows, np.zeros(len(rows), dtype=bool))
    assert e.value == 0.0 and e.low == 0.0 and e.high > 0.01
    census = domain_rate(Design(np.zeros(5, int), np.array([5]), np.array([0.1])), np.arange(5),
                         np.array([1, 0, 0, 0, 0], dtype=bool))
    assert census.value == census.low == census.high == pytest.approx(0.2)  # every sample answered: exact


def test_the_interval_is_modified_jeffreys_at_zero_and_all_errors():
    """A stratum of 100 answered 10 of 10 wrong and one of 900 answered 0 of 50: the lower limit
    takes the clean stratum at 0 (its Jeffreys posterior has mean 1/101, which summed over 900 samples
    would lift the low end by 0.9 points), the upper takes the all-wrong stratum at 1; with a single
    stratum the limits are the Jeffreys interval (Brown, Cai & DasGupta 2001)."""
    from scipy.stats import beta

    d = Design(np.repeat([0, 1], [100, 900]), np.array([100, 900]), np.array([0.9, 0.01]))
    rows = np.r_[0:10, 100:150]
    wrong = np.r_[np.ones(10, dtype=bool), np.zeros(50, dtype=bool)]
    e = domain_rate(d, rows, wrong)
    assert e.value == pytest.approx(0.1) and e.low == pytest.approx(0.1 * beta.ppf(0.025, 10.5, 0.5), rel=0.02)
    assert e.high == pytest.approx(0.1 + 0.9 * beta.ppf(0.975, 0.5, 50.5), rel=0.02)
    one = Design(np.zeros(1000, dtype=int), np.array([1000]), np.array([0.1]))
    e = domain_rate(one, np.arange(40), np.arange(40) < 3)
    assert e.low == pytest.approx(beta.ppf(0.025, 3.5, 37.5), abs=0.002)  # 20,000 draws
    assert e.high == pytest.approx(beta.ppf(0.975, 3.5, 37.5), abs=0.002)


@pytest.mark.parametrize("rate", [0.05, 0.09, 0.17])
def test_200_answers_estimate_the_rate_within_two_points_and_the_interval_holds_it(rate):
    truth, rank, p = _population(rate=rate, seed=1)
    d = strata(rank, p)
    errors, covered = [], 0
    for seed in range(60):
        rows = draw(d, 200, seed=seed)["row"].to_numpy()
        e = domain_rate(d, rows, truth[rows], seed=seed, draws=4000)
        errors.append(abs(e.value - truth.mean()))
        covered += e.low <= truth.mean() <= e.high
    assert np.mean(errors) <= 0.02 and covered / 60 >= 0.9


def test_classes_none_and_flag_precision():
    truth, rank, p = _population(seed=2)
    rng = np.random.default_rng(2)
    given = rng.integers(0, 3, len(truth))
    none = truth & (rng.random(len(truth)) < 0.3)  # a third of the errors are images of no class
    flags = p > 0.5
    d = strata(rank, p)
    rows = draw(d, 400, seed=0)["row"].to_numpy()
    res = estimate(d, rows, truth[rows], none=none[rows], given=given, classes=["a", "b", "c"], flags=flags)
    assert set(res.classes) == {"a", "b", "c"}
    for c, name in enumerate("abc"):
        assert abs(res.classes[name].value - truth[given == c].mean()) < 0.05
    assert abs(res.no_class.value - none.mean()) < 0.03 and res.no_class.value < res.rate.value
    assert abs(res.precision.value - truth[flags].mean()) < 0.08
    with pytest.raises(ValueError, match="answered twice"):
        estimate(d, np.array([1, 1]), np.array([True, False]))


@pytest.mark.parametrize("audit_p", ["none", "too_high"])
def test_recalibration_on_a_synthetic_score_with_known_truth(audit_p):
    """p(mislabeled) recalibrated on 300 design-weighted answers is calibrated against the truth, over
    five draws: the mean p in each band is the true error share there, the flags' stated precision
    (their mean p) is their real one, and the mean is the stratified rate. ``none``: the audit's p
    is 0 everywhere (a mixture that found no second component), so only the rank carries
    information; ``too_high``: the audit's p has the true odds times 4."""
    from labelaudit.noise.calibration import recalibrate
    from labelaudit.review.apply import design_weights

    truth, rank, _ = _population(n=20_000, rate=0.09, seed=4)
    if audit_p == "none":
        p = np.zeros(len(truth))
    else:  # the true error share at each rank (a smoothed truth), its odds times 4
        order = np.argsort(rank)
        share = np.convolve(truth[order].astype(float), np.ones(201) / 201, mode="same")
        true_p = np.empty(len(truth))
        true_p[order] = np.clip(share, 1e-3, 1 - 1e-3)
        p = 4 * true_p / (1 + 3 * true_p)
    d = strata(rank, p, p > 0.5)  # the audit's flags, as a review's design carries them
    band_errors, flag_errors = [], []
    for seed in range(5):
        rows = draw(d, 300, seed=seed)["row"].to_numpy()
        target = domain_rate(d, rows, truth[rows]).value
        p_new, fit = recalibrate(p, rank, rows, truth[rows], design_weights(d, rows), target=target,
                                 groups=d.stratum)
        assert p_new.mean() == pytest.approx(target, abs=1e-6)
        assert (p_new[rows] == truth[rows]).all()
        for low, high in [(0.0, 0.1), (0.1, 0.5), (0.5, 1.0)]:
            band = (p_new >= low) & (p_new < high)
            band[rows] = False
            band_errors.append(abs(truth[band].mean() - p_new[band].mean()))
        flags = p_new > 0.5
        flag_errors.append(abs(truth[flags].mean() - p_new[flags].mean()))
    assert np.mean(band_errors) < 0.05 and max(band_errors) < 0.15
    assert np.mean(flag_errors) < 0.06
