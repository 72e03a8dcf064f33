"""The second run's losses and targets (losses.py) on hand-made tensors."""
import math

import pytest
import torch

from labelaudit.robust.losses import (backward_ce, condition_transition, ema_decay, ema_update, forward_nll,
    lc_targets, sln_targets, soft_ce, weighted_ce)


def test_weighted_ce_is_normalised_by_the_weights():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p(label 0) = 0.5, 0.75
    y = torch.tensor([0, 0])
    w = torch.tensor([1.0, 3.0])
    expected = (1 * math.log(2) + 3 * -math.log(0.75)) / 4
    assert weighted_ce(logits, y, w).item() == pytest.approx(expected, rel=1e-6)
    assert weighted_ce(logits, y, torch.zeros(2)).item() == 0.0  # no NaN for an all-zero batch


def test_forward_correction_on_hand_made_tensors():
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p̂ = [0.75, 0.25]
    t = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    # (p̂ᵀT) = [0.75·0.8 + 0.25·0.4, 0.75·0.2 + 0.25·0.6] = [0.7, 0.3]
    torch.testing.assert_close(forward_nll(logits, torch.tensor([1]), t), torch.tensor([-math.log(0.3)]))
    # T = I gives plain cross-entropy
    torch.testing.assert_close(forward_nll(logits, torch.tensor([0]), torch.eye(2)),
                               torch.nn.functional.cross_entropy(logits, torch.tensor([0]), reduction="none"))


def test_backward_correction_is_unbiased():
    t = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    t_inv = torch.linalg.inv(t)
    logits = torch.tensor([[0.3, -0.4]])
    nll = -torch.log_softmax(logits, dim=1)[0]
    for true in range(2):
        # E over the noisy label ỹ ~ T[true, :] of the corrected loss = the clean loss −log p̂_true
        expected = sum(t[true, j] * backward_ce(logits, torch.tensor([j]), t_inv)[0] for j in range(2))
        assert expected.item() == pytest.approx(nll[true].item(), rel=1e-5)


def test_condition_transition_mixes_with_the_identity_only_when_needed():
    good = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    same, lam = condition_transition(good)
    assert lam == 0.0 and torch.equal(same, good)
    bad = torch.tensor([[0.5, 0.5], [0.49, 0.51]])  # nearly singular
    fixed, lam = condition_transition(bad, max_condition=10.0)
    assert 0 < lam < 1 and float(torch.linalg.cond(fixed)) <= 10.0
    torch.testing.assert_close(fixed.sum(dim=1), torch.ones(2))


def test_sln_targets_noise_has_mean_zero_and_variance_sigma_squared():
    g = torch.Generator().manual_seed(0)
    onehot = torch.nn.functional.one_hot(torch.zeros(20000, dtype=torch.long), 3).float()
    noise = sln_targets(onehot, 0.5, g) - onehot
    assert abs(noise.mean().item()) < 0.01
    assert noise.var().item() == pytest.approx(0.25, rel=0.03)
    assert not torch.equal(sln_targets(onehot[:5], 0.5, g), sln_targets(onehot[:5], 0.5, g))  # fresh draws


def test_soft_ce_with_corrections_matches_the_per_label_losses():
    logits = torch.tensor([[0.3, -0.4], [1.0, 0.2]])
    y = torch.tensor([1, 0])
    t = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    onehot = torch.nn.functional.one_hot(y, 2).float()
    torch.testing.assert_close(soft_ce(logits, onehot, "forward", t), forward_nll(logits, y, t))
    t_inv = torch.linalg.inv(t)
    torch.testing.assert_close(soft_ce(logits, onehot, "backward", t_inv), backward_ce(logits, y, t_inv))


def test_soft_ce_matches_cross_entropy_for_one_hot_targets():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    y = torch.tensor([1, 2])
    torch.testing.assert_close(soft_ce(logits, torch.nn.functional.one_hot(y, 3).float()),
                               torch.nn.functional.cross_entropy(logits, y, reduction="none"))


def test_ema_update():
    model, ema = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.fill_(3.0)
        ema.weight.fill_(1.0)
        model.running_mean.fill_(5.0)
    ema_update(ema, model, 0.9)
    torch.testing.assert_close(ema.weight, torch.full((2,), 0.9 * 1.0 + 0.1 * 3.0))
    torch.testing.assert_close(ema.running_mean, torch.full((2,), 5.0))
    # the warm-up ramp: 0.1 at the first step, 0.5 at step 8, then capped at α
    assert ema_decay(0.999, 0) == pytest.approx(0.1) and ema_decay(0.999, 8) == pytest.approx(0.5)
    assert ema_decay(0.999, 10**6) == 0.999 and ema_decay(0.9, 200) == 0.9


def test_lc_targets_follow_the_min_max_normalised_loss():
    labels = torch.tensor([0, 1, 0])
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    loss = torch.tensor([1.0, 3.0, 2.0])  # ω = 0, 1, 0.5
    expected = torch.tensor([[0.2, 0.8], [0.0, 1.0], [0.75, 0.25]])
    torch.testing.assert_close(lc_targets(labels, probs, loss), expected)
    reverse = torch.tensor([[1.0, 0.0], [0.6, 0.4], [0.75, 0.25]])  # ω = 1, 0, 0.5
    torch.testing.assert_close(lc_targets(labels, probs, loss, weighting="reverse"), reverse)
