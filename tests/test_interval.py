"""The stated interval of the unsupervised noise rate (noise/interval.py) and the answers a review
needs for ±2 points (noise/sampling.py), on hand-computed arrays."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import beta, norm

from labelaudit.noise.interval import ambiguity, disagreement, stated_interval
from labelaudit.noise.mixture import NoiseFit
from labelaudit.noise.sampling import Design, answers_needed


def test_disagreement_and_its_jeffreys_interval():
    rate, low, high = disagreement(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert rate == 0.25
    assert low == pytest.approx(beta.ppf(0.025, 1.5, 3.5)) and high == pytest.approx(beta.ppf(0.975, 1.5, 3.5))
    assert disagreement(np.zeros(5), np.zeros(5))[:2] == (0.0, 0.0)  # none: the low end is 0


def test_ambiguity_by_hand():
    assert ambiguity(np.array([0.0, 1.0, 0.5, 0.25])) == pytest.approx((0 + 0 + 1 + 0.5) / 4)


def test_no_zero_width_interval_when_the_proxy_disagrees_with_the_labels():
    """The mixture found no second component (p = 0, bootstrap [0, 0]) but the proxy's predictions
    disagree with 90 of 1,000 labels: the interval reaches past 9%."""
    fit = NoiseFit(np.zeros(1000), 0.0, "one component", interval=(0.0, 0.0))
    given = np.zeros(1000, dtype=int)
    predicted = given.copy()
    predicted[:90] = 1
    out, parts = stated_interval(fit, predicted, given)
    low, high = out.interval
    assert low == 0.0 and high > 0.09 and high == pytest.approx(parts["disagreement"]["interval"][1])
    assert out.noise_rate == 0.0 and parts["bootstrap"] == [0.0, 0.0]


def test_the_interval_holds_every_part_and_stays_narrow_on_separated_data():
    p = np.r_[np.full(100, 0.99), np.full(900, 0.01)]  # 10% placed with near certainty
    fit = NoiseFit(p, float(p.mean()), "two components", interval=(0.095, 0.112), model_range=None)
    given = np.zeros(1000, dtype=int)
    predicted = given.copy()
    predicted[:104] = 1
    out, parts = stated_interval(fit, predicted, given)
    a = parts["ambiguity"]
    assert a == pytest.approx(0.02)
    d_low, d_high = parts["disagreement"]["interval"]
    assert out.interval == pytest.approx((min(0.095, d_low, p.mean() - a), max(0.112, d_high, p.mean() + a)))
    assert out.interval[1] - out.interval[0] < 0.06
    wide = NoiseFit(p, float(p.mean()), "undecided", interval=(0.095, 0.112), model_range=(0.0, 0.4))
    assert stated_interval(wide, predicted, given)[0].interval == pytest.approx((0.0, 0.4))


def test_answers_needed_for_two_points_by_hand():
    d = Design(np.repeat([0, 1], [100, 900]), np.array([100, 900]), np.array([0.5, 0.0]))
    # the allocation's shares: N_h·σ_h with p kept within [0.05, 0.8]: 100·0.5 and 900·sqrt(0.05·0.95)
    a = np.array([50.0, 900 * np.sqrt(0.05 * 0.95)])
    a /= a.sum()
    # the variance Σ W_h² σ_h² / a_h with the audit's p floored at 2% (the second stratum's 0)
    variance = 0.1 ** 2 * 0.25 / a[0] + 0.9 ** 2 * 0.02 * 0.98 / a[1]
    assert answers_needed(d) == int(np.ceil(norm.ppf(0.975) ** 2 * variance / 0.02 ** 2))
    # under Neyman allocation on the same σ the variance is (Σ W_h σ_h)² / n (Cochran 5.5)
    same = Design(d.stratum, d.sizes, np.array([0.5, 0.05]))
    spread = 0.1 * 0.5 + 0.9 * np.sqrt(0.05 * 0.95)
    assert answers_needed(same, floor=0.05) == int(np.ceil((norm.ppf(0.975) * spread / 0.02) ** 2))
    assert answers_needed(d, half_width=0.2) < answers_needed(d)
    small = Design(np.zeros(50, dtype=int), np.array([50]), np.array([0.5]))
    assert answers_needed(small) == 50  # never more than the audit holds


def test_an_undecided_component_is_settled_by_the_disagreement_within_the_model_range():
    from labelaudit.noise.interval import settle_undecided

    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 1.0, 2000) ** 3  # mean 0.25
    given = np.zeros(2000, dtype=int)
    predicted = given.copy()
    predicted[:200] = 1  # the proxy disagrees with 10%
    fit = NoiseFit(p, float(p.mean()), "undecided", interval=(0.24, 0.26), model_range=(0.05, 0.25))
    out, info = settle_undecided(fit, predicted, given)
    assert out.noise_rate == pytest.approx(0.10, abs=1e-6) and out.p_mislabeled.mean() == pytest.approx(0.10, abs=1e-6)
    assert (np.diff(out.p_mislabeled[np.argsort(p)]) >= 0).all()  # the order stays
    assert info["rate_before"] == pytest.approx(p.mean()) and "disagreement" in out.method
    held = settle_undecided(dataclasses.replace(fit, model_range=(0.15, 0.25)), predicted, given)[0]
    assert held.noise_rate == pytest.approx(0.15, abs=1e-6)  # 10% lies outside the range: its end
    decided = dataclasses.replace(fit, model_range=None)
    assert settle_undecided(decided, predicted, given) == (decided, None)


def test_the_summary_says_how_sure_it_is_and_what_would_make_it_sure():
    from labelaudit.audit.record import Summary
    from labelaudit.report import sureness_note

    wide = Summary(noise_rate=0.157, noise_rate_interval=[0.0, 0.355], extra={"answers_for_2_points": 412})
    assert sureness_note(wide) == ("The scan alone cannot pin the rate down: it lies between 0.0% and 35.5% (95%); "
                                   "verify about 412 samples with `labelaudit review` to know it within ±2 points.")
    narrow = Summary(noise_rate=0.10, noise_rate_interval=[0.085, 0.113], extra={"answers_for_2_points": 189})
    assert sureness_note(narrow).startswith("The scan is sure of the rate within ±1.4 points (95%); about 189")
    verified = Summary(noise_rate=0.1, noise_rate_interval=[0.08, 0.12], extra={"verified": {"answers": 200}})
    assert sureness_note(verified) is None
