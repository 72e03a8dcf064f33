"""Scorer formulas on hand-computed arrays (no training)."""
import numpy as np
import pytest
import torch

from labelaudit.dynamics.recorders import Recorder, logit_margin
from labelaudit.scores import (PROXY_KAPPA_MIN, aul, aum, fuse, oriented, proxy_agreement, rank_descending,
    unlearned_note)


def test_aul_sums_loss_over_epochs():
    loss = np.array([[0.5, 2.0, 1.0],
                     [0.25, 1.5, 1.0],
                     [0.25, 1.0, 1.0]])  # (E=3, N=3)
    np.testing.assert_allclose(aul(loss), [1.0, 4.5, 3.0])


def test_aum_is_mean_margin():
    margin = np.array([[2.0, -1.0],
                       [4.0, -3.0]])
    np.testing.assert_allclose(aum(margin), [3.0, -2.0])


def test_scores_reject_wrong_shapes():
    with pytest.raises(ValueError, match="epochs, samples"):
        aul(np.zeros(3))
    with pytest.raises(ValueError, match="epochs, samples"):
        aum(np.zeros((2, 2, 2)))


def test_logit_margin_on_2x3_logits():
    logits = torch.tensor([[3.0, 1.0, 0.5],
                           [0.0, 2.0, 5.0]])
    labels = torch.tensor([0, 1])
    # sample 0: 3 - max(1, 0.5) = 2; sample 1: 2 - max(0, 5) = -3
    torch.testing.assert_close(logit_margin(logits, labels), torch.tensor([2.0, -3.0]))


def test_oriented_makes_higher_more_suspicious():
    np.testing.assert_allclose(oriented("aul", np.array([1.0, 5.0])), [1.0, 5.0])
    np.testing.assert_allclose(oriented("aum", np.array([3.0, -2.0])), [-3.0, 2.0])
    np.testing.assert_allclose(oriented("limit", np.array([0.1, 1.2])), [0.1, 1.2])
    with pytest.raises(ValueError, match="aul, aum, limit"):
        oriented("nope", np.zeros(2))


def test_fuse_rank_mean_on_hand_computed_ranks():
    scores = {"aum": np.array([3.0, -2.0, 0.0, 1.0]),  # oriented −aum: ranks 1, 4, 3, 2
              "limit": np.array([0.2, 0.9, 1.0, 0.1])}  # ranks 2, 3, 4, 1
    np.testing.assert_allclose(fuse("rank-mean", scores), np.array([1.5, 3.5, 3.5, 1.5]) / 4)
    np.testing.assert_allclose(fuse("rank-mean", {"aum": scores["aum"]}), [-3.0, 2.0, 0.0, -1.0])  # one: itself


def test_fuse_z_mean_and_posterior_mean():
    a = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # median 2, IQR 2
    np.testing.assert_allclose(fuse("z-mean", {"aul": a, "limit": 2 * a}), (a - 2) / 2)
    rng = np.random.default_rng(0)
    clean, noisy = rng.normal(0, 0.1, 200), rng.normal(1, 0.1, 50)
    x = np.concatenate([clean, noisy])
    fused = fuse("posterior-mean", {"aul": x, "limit": x})
    assert fused[200:].min() > 0.99 and fused[:200].max() < 0.01
    with pytest.raises(ValueError, match="z-mean, rank-mean, posterior-mean"):
        fuse("max", {"aul": a})


def test_rank_descending_is_a_stable_permutation():
    np.testing.assert_array_equal(rank_descending(np.array([0.1, 0.9, 0.5, 0.9])), [4, 1, 3, 2])


def test_recorder_keys_by_sample_id():
    from labelaudit.errors import TrainingError

    rec = Recorder(n_samples=4, n_classes=2, epochs=2, device=torch.device("cpu"))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    loss = torch.tensor([0.1, 1.3])
    rec.record(0, torch.tensor([3, 1]), logits, labels, loss)
    with pytest.raises(TrainingError, match="epoch 1: sample 0 was recorded 0 times"):
        rec.end_epoch(0, 0.7)  # every sample is recorded exactly once an epoch
    rec.record(0, torch.tensor([0, 2]), logits, labels, loss)
    rec.end_epoch(0, 0.7)
    dyn = rec.dynamics()
    assert dyn.loss.shape == (1, 4) and dyn.mean_probs.shape == (4, 2)
    np.testing.assert_allclose(dyn.loss[0, [3, 1, 0, 2]], [0.1, 1.3, 0.1, 1.3], rtol=1e-6)
    np.testing.assert_allclose(dyn.margin[0, [3, 1]], [2.0, -1.0])
    p = np.exp(2.0) / (np.exp(2.0) + 1.0)
    np.testing.assert_allclose(dyn.mean_probs[3], [p, 1 - p], rtol=1e-6)
    assert torch.isnan(rec.loss[1]).all()  # an epoch not run stays NaN, not silently 0


def test_proxy_agreement_is_cohens_kappa_by_hand():
    # p_o = 3/4; P(pred) = (1/2, 1/2), P(given) = (1/4, 3/4): p_e = 1/8 + 3/8 = 1/2; κ = (3/4 − 1/2) / (1/2)
    got = proxy_agreement(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert got == pytest.approx({"agreement": 0.75, "kappa": 0.5})
    # a proxy that learned 10 balanced classes perfectly, labels 60% uniformly wrong: κ ≈ (0.4 − 0.1) / 0.9
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(10), 1000)
    given = np.where(rng.random(true.size) < 0.6, (true + rng.integers(1, 10, true.size)) % 10, true)
    assert proxy_agreement(true, given)["kappa"] == pytest.approx(1 / 3, abs=0.02)
    # labels that say nothing about the predictions: κ ≈ 0, however high the raw agreement of a majority class
    skewed = (rng.random(10_000) < 0.9).astype(int)
    assert proxy_agreement(np.ones(10_000, int), skewed) == pytest.approx({"agreement": skewed.mean(), "kappa": 0.0})


def test_unlearned_note_only_below_the_kappa_limit():
    assert unlearned_note(0.9, PROXY_KAPPA_MIN) is None
    assert unlearned_note(None, None) is None  # an audit written before the field existed
    note = unlearned_note(0.07, 0.064)
    assert note.startswith("the proxy's predictions agree with the given labels on 7.0% of the samples")
    assert "κ 0.06" in note and "--epochs" in note
