"""Stage 3d — LIMIT (Harutyunyan et al., ICML 2020): a classifier f that never sees the label's
gradient, and a gradient predictor q that sees only the image. Trained in the same pass over the
same augmented batches as the proxy (proxy.py calls :meth:`LimitPair.step`).

The LIMIT paper's objective (Sec. 3.3–3.4, Algorithm 1 in the supplement), per batch:
- f's logits a = f(x) receive the *predicted* gradient µ = softmax(a) − softmax(q(x)) — never the
  cross-entropy gradient g = softmax(a) − onehot(ỹ). Backpropagating µ from the logits is done with
  the surrogate ⟨a, stop_grad(µ)⟩ / B, whose gradient w.r.t. a is exactly µ / B: the same batch-mean
  scale as mean cross-entropy, so f's learning rate means what the proxy's does.
- q is trained on −log q(g | x) + β‖µ‖², i.e. ‖µ − g‖² (Gaussian q, LIMIT_G) or ‖µ − g‖₁ (Laplace
  q, LIMIT_L), with g detached. Note µ − g = onehot(ỹ) − softmax(q(x)): q learns to predict the
  label from the image alone, and β pulls its prediction towards f's (β‖µ‖², Sec. 3.4).
- Detection (Sec. 4.1, App. C): ``limit_distance`` = ‖µ − g‖ = ‖softmax(q(x)) − onehot(ỹ)‖, in eval
  mode on un-augmented images after training. q cannot memorise a wrong label as easily as a
  network trained on it with cross-entropy, so it predicts the "correct" gradient for a mislabeled
  sample, far from the cross-entropy gradient of its given label.
- The q that scores is an exponential moving average of q's weights over about the last epoch
  (``LimitSettings.average_epochs``; torch's AveragedModel, the momentum model SLN uses, Sec. 4.1
  of ../shared/papers/sln_stochastic_label_noise.txt). It is not in the LIMIT paper, whose q trains
  for hundreds of epochs: in a CPU budget of 15–30, q is still moving when the run stops, and the
  average of its last epoch scores better on every development case (docs/scores.md). 0 = q's last
  weights, the paper's score.

Both networks are built from the same model choices as the proxy (models.MODELS) and are optimised
with Adam, as in the paper's experiments (Sec. 4).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..training.distributed import World, parallel
from ..training.loop import Normalise, batched_logits, device_model, optimiser_step

LIMIT_DISTS = ("gaussian", "laplace")  # LIMIT_G (MSE, default) | LIMIT_L (MAE)
BETA_GRID = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # the paper's grid (supplement, Sec. B)


@dataclass(frozen=True)
class LimitSettings:
    dist: str = "gaussian"  # q's noise model: gaussian → ‖µ − g‖² (LIMIT_G) | laplace → ‖µ − g‖₁ (LIMIT_L)
    beta: float = 3.0  # weight of ‖µ‖² in q's loss (Sec. 3.4); chosen from BETA_GRID by benchmarks/limit_beta.py
    model: str = "tiny"  # f's and q's network (models.MODELS): tiny keeps LIMIT under 2× the proxy's time on a CPU
    lr: float = 1e-3  # Adam learning rate of f and q (the paper's α = 10⁻³, β₁ = 0.9)
    average_epochs: float = 1.0  # horizon of the moving average of q that scores, in epochs; 0 = q's last weights

    def validate(self) -> "LimitSettings":
        if self.dist not in LIMIT_DISTS:
            raise ValueError(f"dist={self.dist!r}: unknown; choose one of {', '.join(LIMIT_DISTS)}")
        if not (self.beta >= 0 and self.beta < float("inf")):
            raise ValueError(f"beta={self.beta!r}: expected a number ≥ 0 (the paper's grid: "
                             f"{', '.join(map(str, BETA_GRID))})")
        if not (self.average_epochs >= 0 and self.average_epochs < float("inf")):
            raise ValueError(f"average_epochs={self.average_epochs!r}: expected a number of epochs ≥ 0 "
                             "(0 scores with q's last weights)")
        return self

    def average_decay(self, steps_per_epoch: int) -> float:
        """The moving average's decay per step: 1 − 1/(average_epochs × steps per epoch), so the
        weights of the last ``average_epochs`` epochs carry 1 − 1/e of the average; 0 (no averaging)
        when that horizon is a step or less."""
        horizon = self.average_epochs * steps_per_epoch
        return 0.0 if horizon <= 1 else 1.0 - 1.0 / horizon


def predicted_gradient(f_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """µ = softmax(f(x)) − softmax(q(x)) (LIMIT Sec. 3.3), (B, K), (B, K) → (B, K)."""
    return torch.softmax(f_logits.float(), dim=1) - torch.softmax(q_logits.float(), dim=1)


def ce_gradient(f_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """g = softmax(f(x)) − onehot(ỹ): the cross-entropy gradient w.r.t. the logits, (B, K)."""
    probs = torch.softmax(f_logits.float(), dim=1)
    return probs - F.one_hot(labels, probs.shape[1]).to(probs.dtype)


def inject_gradient(f_logits: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient w.r.t. ``f_logits`` (B, K) is exactly ``mu / B`` (mu is detached).

    Backpropagating it updates f with the predicted gradient only (Algorithm 1: "starting with g_t,
    backpropagate to compute the gradient with respect to w"), at the batch-mean scale of mean
    cross-entropy.
    """
    return (f_logits.float() * mu.detach()).sum() / f_logits.shape[0]


def q_loss(q_logits: torch.Tensor, f_probs: torch.Tensor, labels: torch.Tensor, *, dist: str,
           beta: float) -> torch.Tensor:
    """q's objective, batch mean of ‖µ − g‖² (gaussian) or ‖µ − g‖₁ (laplace) plus β‖µ‖² (LIMIT
    Sec. 3.4, final objective). ``f_probs`` = softmax(f(x)), detached: only q learns from this loss.

    q_logits (B, K), f_probs (B, K), labels (B,) → scalar.
    """
    q_probs = torch.softmax(q_logits.float(), dim=1)
    mu = f_probs.detach() - q_probs  # (B, K)
    g = f_probs.detach() - F.one_hot(labels, q_probs.shape[1]).to(q_probs.dtype)  # (B, K), no grad
    diff = mu - g
    fit = diff.pow(2).sum(dim=1) if dist == "gaussian" else diff.abs().sum(dim=1)  # (B,)
    return (fit + beta * mu.pow(2).sum(dim=1)).mean()


def limit_distance(q_logits: torch.Tensor, labels: torch.Tensor, *, dist: str = "gaussian") -> torch.Tensor:
    """‖µ − g‖ = ‖softmax(q(x)) − onehot(ỹ)‖ per sample (LIMIT Sec. 4.1, App. C): the L2 norm for the
    Gaussian q, the L1 norm for the Laplace q (the norm its loss uses). (B, K), (B,) → (B,);
    higher = more likely mislabeled. In [0, √2] (L2) or [0, 2] (L1)."""
    q_probs = torch.softmax(q_logits.float(), dim=1)
    diff = q_probs - F.one_hot(labels, q_probs.shape[1]).to(q_probs.dtype)
    return diff.pow(2).sum(dim=1).sqrt() if dist == "gaussian" else diff.abs().sum(dim=1)


class LimitPair:
    """The classifier f and the gradient predictor q, with their optimisers, on ``device``.

    Build it right after the proxy network under the same global seed: f and q take the next draws
    from torch's generator, so adding LIMIT never changes the proxy's initialisation, and LIMIT takes
    no random numbers in the loop, so the proxy's data order and augmentation stay the same too.
    """

    def __init__(self, model: str, num_classes: int, limit: LimitSettings, *, device: torch.device,
                 steps_per_epoch: int, fp16: bool = False, world: World = World()):
        self.limit = limit
        self.f = device_model(model, num_classes, device)
        self.q = device_model(model, num_classes, device)
        self.f_train, self.q_train = parallel(self.f, world), parallel(self.q, world)  # DDP under torchrun
        # Adam, as the paper trains LIMIT (Sec. 4): with β > 0, q settles near (onehot + β·softmax(f)) / (1 + β),
        # so µ ≈ g / (1 + β) — SGD would shrink f's step by 1 + β; Adam's update does not depend on that scale
        self.opt = torch.optim.Adam([*self.f.parameters(), *self.q.parameters()], lr=limit.lr)
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None  # fp16 gradients underflow without one
        # the q that scores: BatchNorm's running statistics are averaged with the weights they belong to
        self.q_average = AveragedModel(self.q, multi_avg_fn=get_ema_multi_avg_fn(limit.average_decay(steps_per_epoch)),
                                       use_buffers=True)

    def state_dict(self) -> dict:
        """f's, q's, q's average's, the optimiser's (and the fp16 scaler's) state, for a checkpoint."""
        return {"f": self.f.state_dict(), "q": self.q.state_dict(), "q_average": self.q_average.state_dict(),
                "opt": self.opt.state_dict(), "scaler": None if self.scaler is None else self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.f.load_state_dict(state["f"])
        self.q.load_state_dict(state["q"])
        self.q_average.load_state_dict(state["q_average"])
        self.opt.load_state_dict(state["opt"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def step(self, x: torch.Tensor, y: torch.Tensor, autocast: torch.autocast, weight: float = 1.0) -> torch.Tensor:
        """One optimiser step of f and q on the proxy's batch x (B, 3, S, S) float, labels y (B,);
        ``weight`` scales the loss as the training loop scales the proxy's (this rank's share of the
        global batch under torchrun). Returns the training-pass limit distance (B,), detached.
        """
        with autocast:
            f_logits = self.f_train(x)  # (B, K)
            q_logits = self.q_train(x)  # (B, K): the image only, never the label
        f_probs = torch.softmax(f_logits.float(), dim=1)
        mu = predicted_gradient(f_logits, q_logits).detach()  # (B, K): what f learns from
        # f and q have disjoint parameters and disjoint losses, so one backward serves both
        loss = inject_gradient(f_logits, mu) + q_loss(q_logits, f_probs, y, dist=self.limit.dist,
                                                      beta=self.limit.beta)
        optimiser_step(loss * weight if weight != 1.0 else loss, self.opt, self.scaler)
        self.q_average.update_parameters(self.q)
        return limit_distance(q_logits.detach(), y, dist=self.limit.dist)

    def distance(self, images: torch.Tensor, labels: torch.Tensor, normalise: Normalise, batch_size: int,
                 autocast: torch.autocast) -> torch.Tensor:
        """limit_distance of every sample, q's moving average in eval mode, on un-augmented images
        (N, 3, S, S) uint8 (q itself with ``average_epochs`` 0: the average is then its last weights)."""
        q_logits = batched_logits(self.q_average.module, images, normalise, batch_size, autocast)
        return limit_distance(q_logits, labels, dist=self.limit.dist)
