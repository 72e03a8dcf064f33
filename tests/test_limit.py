"""LIMIT (limit.py): the predicted-gradient update, q's loss and the distance, on hand-made tensors;
then the pair on a tiny synthetic noisy dataset."""
import copy
import inspect
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from labelaudit.dynamics.limit import (LimitPair, LimitSettings, ce_gradient, inject_gradient, limit_distance,
    predicted_gradient, q_loss)
from labelaudit.dynamics.proxy import ProxySettings, train_proxy


def test_gradient_reaching_f_logits_is_mu_at_batch_mean_scale():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    logits = net(x)
    logits.retain_grad()
    q_logits = torch.randn(5, 3)
    mu = predicted_gradient(logits, q_logits)
    inject_gradient(logits, mu).backward()
    torch.testing.assert_close(logits.grad, mu.detach() / 5)
    # the same scale as mean cross-entropy: its logit gradient is (softmax − onehot) / B
    y = torch.tensor([0, 1, 2, 0, 1])
    ce_logits = net(x).detach().requires_grad_()
    torch.nn.functional.cross_entropy(ce_logits, y).backward()
    torch.testing.assert_close(ce_logits.grad, ce_gradient(ce_logits.detach(), y) / 5)


def test_predicted_gradient_on_hand_made_logits():
    f = torch.tensor([[0.0, 0.0]])  # softmax [0.5, 0.5]
    q = torch.tensor([[math.log(3.0), 0.0]])  # softmax [0.75, 0.25]
    torch.testing.assert_close(predicted_gradient(f, q), torch.tensor([[-0.25, 0.25]]))


def test_q_loss_on_hand_made_tensors():
    q_logits = torch.zeros(1, 2)  # softmax [0.5, 0.5]
    f_probs = torch.tensor([[0.6, 0.4]])
    y = torch.tensor([0])
    # µ = [0.1, -0.1]; g = [-0.4, 0.4]; µ − g = [0.5, -0.5]; ‖µ‖² = 0.02
    assert q_loss(q_logits, f_probs, y, dist="gaussian", beta=0.0).item() == pytest.approx(0.5)
    assert q_loss(q_logits, f_probs, y, dist="gaussian", beta=1.0).item() == pytest.approx(0.52)
    assert q_loss(q_logits, f_probs, y, dist="laplace", beta=10.0).item() == pytest.approx(1.0 + 0.2)


def test_limit_distance_on_hand_made_tensors():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [math.log(3.0), 0.0]])  # [.5,.5], [.75,.25] ×2
    y = torch.tensor([0, 1, 0])
    # differences: [-.5, .5], [.75, -.75], [-.25, .25]
    torch.testing.assert_close(limit_distance(logits, y),
                               torch.tensor([math.sqrt(0.5), math.sqrt(2 * 0.75**2), math.sqrt(2 * 0.25**2)]))
    torch.testing.assert_close(limit_distance(logits, y, dist="laplace"), torch.tensor([1.0, 1.5, 0.5]))


def _pair(beta=1.0) -> LimitPair:
    torch.manual_seed(0)
    return LimitPair("small", 3, LimitSettings(beta=beta), device=torch.device("cpu"), steps_per_epoch=4)


def test_q_never_takes_the_label_and_f_gets_no_gradient_from_it():
    pair = _pair()
    assert list(inspect.signature(pair.q.forward).parameters) == ["x"]
    x = torch.randn(6, 3, 16, 16)
    a, b = copy.deepcopy(pair), copy.deepcopy(pair)
    no_amp = torch.autocast("cpu", enabled=False)
    a.step(x, torch.tensor([0, 1, 2, 0, 1, 2]), no_amp)
    b.step(x, torch.tensor([2, 2, 2, 1, 1, 0]), no_amp)  # other labels, same images
    for pa, pb in zip(a.f.parameters(), b.f.parameters()):
        torch.testing.assert_close(pa, pb)  # f moved the same: the label never reached it
    assert any(not torch.equal(pa, pb) for pa, pb in zip(a.q.parameters(), b.q.parameters()))
    assert any(not torch.equal(p0, pa) for p0, pa in zip(pair.f.parameters(), a.f.parameters()))  # f did move


def test_settings_are_validated():
    with pytest.raises(ValueError, match="dist='cauchy'"):
        LimitSettings(dist="cauchy").validate()
    with pytest.raises(ValueError, match="beta=-1"):
        LimitSettings(beta=-1.0).validate()
    with pytest.raises(ValueError, match="average_epochs=-0.5"):
        LimitSettings(average_epochs=-0.5).validate()


def test_average_decay_spans_the_asked_epochs():
    assert LimitSettings().average_decay(78) == pytest.approx(1 - 1 / 78)  # CIFAR-10 10k at batch 128
    assert LimitSettings(average_epochs=2.5).average_decay(14) == pytest.approx(1 - 1 / 35)
    assert LimitSettings(average_epochs=0).average_decay(78) == 0.0  # q's last weights
    assert LimitSettings(average_epochs=1).average_decay(1) == 0.0  # a one-step horizon is no average


def test_scoring_q_is_the_moving_average_of_q():
    torch.manual_seed(0)
    pair = LimitPair("tiny", 3, LimitSettings(average_epochs=1.0), device=torch.device("cpu"), steps_per_epoch=2)
    x, y = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    no_amp = torch.autocast("cpu", enabled=False)
    seen = []  # q's head weights after each step
    for _ in range(3):
        pair.step(x, y, no_amp)
        seen.append(pair.q.head.weight.detach().clone())
    # decay 1 − 1/2: the first step copies, then avg ← ½ avg + ½ q
    expected = 0.5 * (0.5 * seen[0] + 0.5 * seen[1]) + 0.5 * seen[2]
    torch.testing.assert_close(pair.q_average.module.head.weight, expected)
    assert not torch.allclose(expected, seen[2])  # the average is not q's last weights
    # the distance is the average's, in eval mode; with average_epochs 0 it is q's own
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    norm = lambda t: t.float() / 255  # noqa: E731
    with torch.no_grad():
        avg = limit_distance(pair.q_average.module.eval()(norm(images)), y)
    torch.testing.assert_close(pair.distance(images, y, norm, 8, no_amp), avg)
    torch.manual_seed(0)
    last = LimitPair("tiny", 3, LimitSettings(average_epochs=0), device=torch.device("cpu"), steps_per_epoch=2)
    for _ in range(3):
        last.step(x, y, no_amp)
    with torch.no_grad():
        own = limit_distance(last.q.eval()(norm(images)), y)
    torch.testing.assert_close(last.distance(images, y, norm, 8, no_amp), own)


def _noisy_colour_tensors(n_per_class=40, flips=6, size=16, seed=0):
    """3 colour classes as uint8 (N, 3, S, S); the first ``flips`` of each class filed under the next."""
    rng = np.random.default_rng(seed)
    colours = np.array([[200, 30, 30], [30, 190, 40], [30, 40, 200]], dtype=np.float64)
    images, labels, noisy = [], [], []
    for k in range(3):
        for i in range(n_per_class):
            img = colours[k][:, None, None] + rng.normal(0, 35, (3, size, size))
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append((k + 1) % 3 if i < flips else k)
            noisy.append(i < flips)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels), np.array(noisy)


@pytest.mark.slow
def test_limit_distance_separates_noisy_from_clean_and_leaves_the_proxy_alone():
    images, labels, noisy = _noisy_colour_tensors()
    settings = ProxySettings(epochs=8, batch_size=16, augment="none")
    cpu = torch.device("cpu")
    plain = train_proxy(images, labels, 3, settings, device=cpu)
    dyn = train_proxy(images, labels, 3, settings, device=cpu, limit=LimitSettings())
    assert dyn.limit_distance.shape == (len(labels),) and dyn.limit_epochs.shape == (8, len(labels))
    assert roc_auc_score(noisy, dyn.limit_distance) > 0.95
    assert dyn.limit_distance[noisy].mean() > 0.8 > dyn.limit_distance[~noisy].mean()
    # LIMIT takes no random numbers in the loop and its networks are built after the proxy's
    np.testing.assert_array_equal(dyn.loss, plain.loss)
    assert plain.limit_distance is None
