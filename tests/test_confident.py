"""The confident joint (noise/confident.py) and ``--freeze``'s rate made from it (noise/interval.py
``settle_by_head``): by hand, and on probabilities simulated with a known noise process."""
from __future__ import annotations

import numpy as np
import pytest

from labelaudit.noise.confident import confident_joint, confident_rate, joint_rate
from labelaudit.noise.interval import settle_by_head
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
