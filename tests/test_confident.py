"""The confident joint (noise/confident.py) and the rates made from it (noise/interval.py
``settle_by_head`` with a backbone, ``settle_by_trajectory`` from scratch): by hand, and on
probabilities and trajectories simulated with a known noise process."""
from __future__ import annotations

import numpy as np
import pytest

from labelaudit.noise.confident import (STILL_FALLING, STILL_MOVING, confident_joint, confident_rate, joint_rate, trajectory_rate,
                                       window_joint_rate)
from labelaudit.noise.interval import settle_by_head, settle_by_trajectory
from labelaudit.noise.mixture import NoiseFit


def test_the_confident_joint_by_hand():
    """Thresholds t = (mean of 0.9, 0.8, 0.25; mean of 0.8, 0.9, 0.4) = (0.65, 0.7). Samples 0, 1 are
    confidently 0 and given 0; sample 2 (given 0) reaches only class 1's threshold; 3, 4 are 1 and
    given 1; sample 5 reaches neither and is not counted. Raw joint [[2, 0], [1, 2]]; given label 1
    has 3 samples but 2 counted, so its column is scaled by 3/2: [[2, 0], [1, 3]], rate 1/6."""
    given = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.25, 0.75], [0.2, 0.8], [0.1, 0.9], [0.6, 0.4]])
    joint, counted = confident_joint(probs, given)
    np.testing.assert_allclose(joint, [[2.0, 0.0], [1.0, 3.0]])
    assert counted == 5 and joint_rate(joint) == pytest.approx(1 / 6)
    assert joint.sum(axis=0).tolist() == [3.0, 3.0]  # each column: its given label's count


def test_a_label_nobody_confidently_carries_stays_on_the_diagonal_and_an_absent_class_is_never_chosen():
    given = np.array([0, 0, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.7, 0.1, 0.2], [0.5, 0.4, 0.1]])  # class 2: given to nobody
    joint, counted = confident_joint(probs, given)
    # t = (0.8, 0.4, inf): sample 1 reaches no threshold; sample 2 reaches class 1's (0.4 ≥ 0.4)
    assert counted == 2 and joint[2].sum() == 0.0
    np.testing.assert_allclose(joint, [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert joint_rate(joint) == 0.0


def _simulated(n: int, noise: float, seed: int):
    """Four classes; each image is clear (p(y | x) one-hot) or, one in four, an even toss between two
    classes, whose true class is drawn from that p(y | x) (the hard clean images a head gets wrong half
    the time); given labels drawn through a uniform transition T with the stated noise; the head's
    probabilities are p(ỹ | x) = p(y | x) T, blurred a little. Returns (probs, given, truly wrong)."""
    rng = np.random.default_rng(seed)
    k = 4
    t = np.full((k, k), noise / (k - 1))
    np.fill_diagonal(t, 1.0 - noise)
    look = rng.integers(0, k, n)
    clean = np.eye(k)[look]
    hard = rng.random(n) < 0.25
    clean[hard] = 0.5 * np.eye(k)[look[hard]] + 0.5 * np.eye(k)[(look[hard] + 1) % k]
    y = np.array([rng.choice(k, p=c) for c in clean])
    given = np.array([rng.choice(k, p=t[c]) for c in y])
    probs = clean @ t
    probs = probs * np.exp(rng.normal(0.0, 0.1, probs.shape))
    return probs / probs.sum(axis=1, keepdims=True), given, given != y


@pytest.mark.parametrize("noise", [0.0, 0.1, 0.3])
def test_the_rate_on_simulated_probabilities_with_known_noise(noise):
    probs, given, wrong = _simulated(6000, noise, seed=3)
    estimate = confident_rate(probs, given, random_state=0)
    assert estimate.rate == pytest.approx(wrong.mean(), abs=0.025)
    disagreement = (probs.argmax(axis=1) != given).mean()  # counts the hard clean images the head gets wrong
    assert disagreement - wrong.mean() > 0.06
    low, high = estimate.interval
    assert low <= estimate.rate <= high and high - low < 0.05
    assert len(estimate.draws) == 50 and 0.7 < estimate.counted < 0.8  # the even tosses reach no threshold


def test_settle_by_head_moves_every_p_to_the_confident_rate_and_keeps_the_ranking():
    probs, given, wrong = _simulated(3000, 0.2, seed=5)
    rng = np.random.default_rng(0)
    p = np.clip(np.where(wrong, 0.7, 0.3) + rng.normal(0, 0.1, len(given)), 0.01, 0.99)  # reads ~0.38
    fit = NoiseFit(p, float(p.mean()), "mixture", interval=(0.37, 0.39))
    out, info = settle_by_head(fit, probs, given=given, random_state=0)
    estimate = confident_rate(probs, given, random_state=0)
    assert out.noise_rate == pytest.approx(estimate.rate, abs=1e-6) == pytest.approx(info["rate"], abs=1e-6)
    assert out.noise_rate == pytest.approx(wrong.mean(), abs=0.025)
    assert np.array_equal(np.argsort(out.p_mislabeled, kind="stable"), np.argsort(p, kind="stable"))
    assert out.interval == estimate.interval and np.array_equal(out.draws, estimate.draws)
    assert info["rate_before"] == pytest.approx(p.mean()) and info["interval_before"] == [0.37, 0.39]
    assert "confident joint" in out.method


def test_held_out_probabilities_come_from_heads_that_never_saw_the_sample():
    """Class 2 is the label of sample 0 alone: the audit's own head learns it, while sample 0's
    held-out head trained without it and gives class 2 almost nothing."""
    import torch

    from labelaudit.dynamics.proxy import ProxySettings, held_out_probs, train_proxy
    from labelaudit.training.embeddings import Standardise, linear_head

    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(40, 8)).astype(np.float32))
    labels = torch.from_numpy(np.r_[2, rng.integers(0, 2, 39)]).long()
    settings = ProxySettings(epochs=15, stop_from=None, batch_size=20, lr=0.5, augment="none", frozen=True)
    cpu = torch.device("cpu")
    head, normalise = (lambda: linear_head(8, 3, cpu)), Standardise(features)
    own = train_proxy(features, labels, 3, settings, device=cpu, network=head, normalise=normalise).mean_probs
    held = held_out_probs(features, labels, 3, settings, device=cpu, network=head, normalise=normalise)
    assert held.shape == (40, 3) and np.allclose(held.sum(axis=1), 1.0)
    assert held.dtype == own.dtype == np.float32  # N × K float32, as the recorder's: half of float64 at scale
    assert own[0, 2] > 0.15 and held[0, 2] < 0.03
    stages = []
    again = held_out_probs(features, labels, 3, settings, device=cpu, network=head, normalise=normalise,
                           progress=lambda stage, done, total, info: stages.append(stage))
    assert np.array_equal(held, again)  # the same seed, the same folds and heads
    assert sorted(set(stages)) == [f"held-out head {f}/5" for f in range(1, 6)]  # each head under its own stage


def test_rows_and_chunks_give_the_joint_of_the_rows_themselves(monkeypatch):
    import labelaudit.noise.confident as confident

    probs, given, _ = _simulated(500, 0.2, seed=7)
    rows = np.random.default_rng(1).integers(0, 500, 700)  # a bootstrap draw: repeats
    whole = confident_joint(probs[rows], given[rows])
    monkeypatch.setattr(confident, "CHUNK", 64)  # many chunks, the last one short
    in_place = confident_joint(probs.astype(np.float32), given, rows)
    np.testing.assert_allclose(in_place[0], whole[0], rtol=1e-6)
    assert in_place[1] == whole[1]


def test_the_joint_from_two_probabilities_per_sample_by_hand_equals_the_full_joint():
    """Thresholds (mean of 0.9, 0.8, 0.2; of 0.8, 0.9, 0.4) = (0.633, 0.7). Sample 2 (given 0) is
    predicted 1 with 0.75 ≥ 0.7: off the diagonal; sample 5 (given 1) is predicted 0 with 0.5 < 0.633
    and has 0.4 < 0.7 for its own label: not counted. Given label 0: 1 of 3 counted off; label 1: 0 of
    2: rate (3 · 1/3 + 3 · 0) / 6 = 1/6, as the joint of the same two-class probabilities."""
    given = np.array([0, 0, 0, 1, 1, 1])
    predicted = np.array([0, 0, 1, 1, 1, 0])
    p_given = np.array([0.9, 0.8, 0.2, 0.8, 0.9, 0.4])
    p_other = np.array([0.05, 0.1, 0.75, 0.1, 0.05, 0.5])
    assert window_joint_rate(p_given, p_other, given, predicted, 2) == pytest.approx(1 / 6)
    probs = np.zeros((6, 2))
    probs[np.arange(6), given] = p_given
    probs[np.arange(6), 1 - given] = p_other
    assert joint_rate(confident_joint(probs, given)[0]) == pytest.approx(1 / 6)
    # a bootstrap draw, sample 2 twice and 5 not at all, recomputes the thresholds: (0.9 + 0.8 + 0.2 + 0.2) / 4
    # = 0.525 and 0.85, so sample 2's 0.75 no longer reaches class 1's, and nothing is off the diagonal
    rows = np.array([0, 1, 2, 2, 3, 4])
    assert window_joint_rate(p_given, p_other, given, predicted, 2, rows) == 0.0


def _trajectories(epochs: int, n: int = 2000, noise: float = 0.2, learnt_from: int | None = None, seed: int = 0,
                  per_epoch: float = 0.1):
    """Two classes; a share ``noise`` of the given labels wrong. A clean sample's given label has
    probability 0.9, a wrong one's 0.1 (the other class 0.9) — until epoch ``learnt_from``, from which
    ``per_epoch`` more of the wrong labels each epoch are learnt (given label 0.9). Returns (loss, margin,
    given, predicted, truly wrong) as a scan records them: loss = −log p, margin = log(p / p_other)."""
    rng = np.random.default_rng(seed)
    given = rng.integers(0, 2, n)
    wrong = rng.random(n) < noise
    order = rng.permutation(np.flatnonzero(wrong))
    p = np.where(wrong, 0.1, 0.9)[None, :].repeat(epochs, axis=0)
    if learnt_from is not None:
        for e in range(learnt_from, epochs):
            p[e, order[: int(len(order) * per_epoch * (e - learnt_from + 1))]] = 0.9
    loss, margin = -np.log(p), np.log(p / (1.0 - p))
    predicted = np.where(wrong, 1 - given, given)  # what the whole run predicts
    return loss.astype(np.float32), margin.astype(np.float32), given, predicted, wrong


def test_a_reading_that_has_stopped_falling_is_the_rate_and_one_still_falling_is_not():
    loss, margin, given, predicted, wrong = _trajectories(20)
    flat = trajectory_rate(loss, margin, given, predicted, 2, random_state=0)
    assert flat.rate == pytest.approx(wrong.mean()) and flat.previous == pytest.approx(wrong.mean())
    assert flat.fall == pytest.approx(0.0) and flat.settled and flat.epochs == (16, 20)
    assert flat.interval[0] <= wrong.mean() <= flat.interval[1] and flat.interval[1] - flat.interval[0] < 0.05
    loss, margin, given, predicted, wrong = _trajectories(20, learnt_from=12)
    falling = trajectory_rate(loss, margin, given, predicted, 2, random_state=0)
    # epochs 16-20 have 50-90% of the wrong labels learnt, 11-15 at most 40%: the reading falls by more than half
    assert falling.rate < 0.5 * falling.previous and falling.fall > STILL_FALLING and not falling.settled
    assert falling.interval[0] == max(0.0, falling.rate - (falling.previous - falling.rate))  # one more window's fall
    assert falling.interval[1] >= falling.previous
    assert trajectory_rate(loss[:9], margin[:9], given, predicted, 2) is None  # fewer than two windows
    clean = _trajectories(20, noise=0.0)
    assert not trajectory_rate(*clean[:4], 2).settled  # nothing off the diagonal: the mixture's call
    # 40% noise learnt 2% a window-epoch: the reading falls by under 15% of itself but by about 4 points
    slow = trajectory_rate(*_trajectories(20, noise=0.4, learnt_from=12, per_epoch=0.02)[:4], 2)
    assert slow.fall < STILL_FALLING and slow.previous - slow.rate > 3 * STILL_MOVING and not slow.settled


def test_settle_by_trajectory_takes_a_settled_reading_and_leaves_the_mixture_otherwise():
    loss, margin, given, predicted, wrong = _trajectories(20)
    rng = np.random.default_rng(1)
    p = np.clip(np.where(wrong, 0.8, 0.25) + rng.normal(0, 0.1, len(given)), 0.01, 0.99)  # the mixture: ~0.36
    fit = NoiseFit(p, float(p.mean()), "mixture", {"no_class": [False, False]}, interval=(0.33, 0.39),
                   model_range=(0.3, 0.5))
    out, info = settle_by_trajectory(fit, loss, margin, predicted, given, 2, random_state=0)
    assert out.noise_rate == pytest.approx(wrong.mean(), abs=1e-6) and info["used"] and info["rate_before"] == fit.noise_rate
    assert np.array_equal(np.argsort(out.p_mislabeled, kind="stable"), np.argsort(p, kind="stable"))
    assert out.model_range is None and info["model_range_before"] == [0.3, 0.5] and out.interval[0] <= wrong.mean()
    assert "stopped fitting the wrong labels" in out.method
    falling = _trajectories(20, learnt_from=12)
    same, info = settle_by_trajectory(fit, falling[0], falling[1], falling[3], falling[2], 2)
    assert same is fit and not info["used"] and info["fall"] > STILL_FALLING
    junk = NoiseFit(p, float(p.mean()), "mixture", {"no_class": [False, True]})  # the joint cannot see images of no class
    same, info = settle_by_trajectory(junk, loss, margin, predicted, given, 2)
    assert same is junk and not info["used"] and "no class" in info["why"]
    assert settle_by_trajectory(fit, loss[:9], margin[:9], predicted, given, 2) == (fit, None)
