"""Meta re-weighting (L2R, IEG Sec. 3) and meta re-labeling (IEG Sec. 4.3) with a trusted batch.

Each training step, a virtual SGD step is taken on the batch's loss weighted by per-sample
coefficients; the trusted (probe) batch's loss after that step is differentiated with respect to the
coefficients, through the virtual step (second order), with torch.func (``functional_call`` +
``grad``): the network itself is called with substituted parameters, never re-implemented.

- Weights (IEG Eq. 1–2, L2R's online approximation): at ω₀ = 1/B, ``ω* = max(−∂L_p/∂ω, 0)``,
  normalised to sum to 1 (all zero when no sample helps the probe loss).
- With the audit's weights aᵢ (``prior``, ``--weights --meta-reweight``), L2R is applied to the
  audit-weighted losses ℓᵢ = aᵢ·Lᵢ: the virtual step descends Σ ωᵢ aᵢ Lᵢ, so ∂L_p/∂ωᵢ carries the
  factor aᵢ, and the step's loss is Σ ω*ᵢ aᵢ Lᵢ with the products ω*ᵢ aᵢ normalised to sum to 1 (the
  audit's weight thus enters squared). A sample counts only when the audit trusts it and the trusted
  batch's gradient agrees with it.
- Labels (IEG Eq. 5–7): the target is ``P(λ) = λ·y + (1 − λ)·g(x)`` with g the pseudo label; at λ₀ = 0.9,
  ``λ* = [sign(−∂L_p/∂λ)]₊`` keeps the given label where raising λ lowers the probe loss and takes the
  pseudo label otherwise.
- Averaged weights (``--meta-average α``, our addition; IEG and L2R use each step's ω* alone): ω* of one
  step rests on one probe batch and one virtual step, and on a hard dataset it flips between steps. Each
  sample keeps an exponential average of B·ω* over its visits (once an epoch), bias-corrected as Adam
  corrects its moments, so the first visit gives ω* itself; the batch's loss is weighted by the averages,
  normalised to sum to 1. α = 0 is the paper's method.

- Supervised training (IEG Sec. 4.2 and 4.4, Algorithm 1 steps 1, 5–6; ``--meta-kl k``, ``--meta-mixup p``):
  each batch also gets a strong view x̂ (the standard augmentation, then cutout), which is the second
  view of the pseudo label (Eq. 3, K = 2) and the other side of the consistency loss
  ``L_KL = 1/N Σ KL(Φ(x) ‖ Φ(x̂))`` (Eq. 4, :func:`kl_consistency`). The pool D_p ∪ D_u ∪ D̂_u (the probe
  batch with its verified labels, the batch and its strong view with their pseudo labels: IEG's threshold
  T at its highest, Appendix B, so every sample counts as possibly mislabeled) is mixed with a random
  permutation of itself, β ~ Beta(0.5, 0.5) (Eq. 9, :func:`mix`, :func:`arcsine`); ``L_pβ`` is the mean loss of
  the mixed rows anchored on a probe sample, ``L_uβ`` of the rest. The step's loss is Algorithm 1 step 6,
  ``L_ω* + L_λ* + L_pβ + p·L_uβ + k·L_KL`` (the paper's CIFAR setting: p = 5, k = 20, Sec. 5.2). The
  probe data thus enters training only through mixed points, never directly (Sec. 4.4).

The virtual step is plain SGD at the current learning rate (as L2R), or with ``sgd`` (``--meta-momentum``)
the optimiser's own next step, momentum, Nesterov and weight decay included (IEG Sec. 4.3: "the exact
momentum update direction using momentum states of the SGD optimizer"; :func:`sgd_lookahead`). The
momentum and the weight decay do not depend on ω, so they move the point where the probe loss is taken,
not the form of its gradient. BatchNorm runs in training mode on copies of its buffers, so the
virtual steps never move the real running statistics, and the probe batch is passed together with the
training batch so that it is normalised with the same batch statistics.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from ..dynamics.pseudo import pseudo_label
from ..training.augment import augment_batch, cutout_batch
from .config import TrainConfig
from .losses import soft_ce

LAMBDA0 = 0.9  # IEG footnote 2: λ₀ leans to the original labels


@dataclass
class MetaCoefficients:
    weights: torch.Tensor  # (B,) ω*, non-negative, summing to 1 (or all 0)
    keep_given: torch.Tensor | None  # (B,) bool, λ* > 0 (meta re-labeling only)


def sgd_lookahead(model: torch.nn.Module, params: dict, grads: dict, lr: float,
                  sgd: torch.optim.SGD | None = None) -> dict:
    """The parameters after one step on ``grads`` (name → tensor, differentiable).

    Without ``sgd``: ``θ − lr·g`` (L2R). With it, the step torch.optim.SGD would take from its current
    state (one parameter group): g ← g + wd·θ; the momentum buffer b ← μ·b + g (b = g on the first step);
    the direction b, or g + μ·b with Nesterov; that is ``θ − lr·((1 + μ)·g + μ²·b_old)`` with Nesterov and
    ``θ − lr·(g + μ·b_old)`` without, b_old = 0 before the first step.
    """
    if sgd is None:
        return {name: params[name] - lr * grads[name] for name in params}
    if len(sgd.param_groups) != 1:
        raise ValueError("sgd_lookahead follows an optimiser with one parameter group")
    group = sgd.param_groups[0]
    mu, wd, nesterov = group["momentum"], group["weight_decay"], group["nesterov"]
    if group.get("dampening", 0) or group.get("maximize", False):
        raise ValueError("sgd_lookahead follows SGD without dampening or maximize")
    out = {}
    for name, p in model.named_parameters():
        g = grads[name] + wd * params[name] if wd else grads[name]
        old = sgd.state.get(p, {}).get("momentum_buffer") if mu else None
        if not mu:
            step = g
        elif nesterov:
            step = (1.0 + mu) * g + (mu * mu * old if old is not None else 0.0)
        else:
            step = g + (mu * old if old is not None else 0.0)
        out[name] = params[name] - lr * step
    return out


def meta_coefficients(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, probe_x: torch.Tensor,
                      probe_y: torch.Tensor, *, lr: float, pseudo: torch.Tensor | None = None,
                      prior: torch.Tensor | None = None, lambda0: float = LAMBDA0,
                      sgd: torch.optim.SGD | None = None) -> MetaCoefficients:
    """ω* (and λ* when ``pseudo`` is given) for one batch.

    x (B, 3, S, S) float, target (B, K) the batch's (possibly soft) given-label targets, probe_x (M, 3, S, S),
    probe_y (M,) verified labels, lr the virtual step's size, pseudo (B, K) pseudo labels g(x) or None,
    prior (B,) the audit's non-negative per-sample weights aᵢ or None (all 1), sgd the model's optimiser
    when the virtual step is to follow it (:func:`sgd_lookahead`). The returned weights multiply the
    per-sample losses directly (aᵢ already folded in).
    """
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    b = x.shape[0]
    eps = torch.full((b,), 1.0 / b, device=x.device)
    lam = torch.full((b,), lambda0, device=x.device)
    a = torch.ones(b, device=x.device) if prior is None else prior.detach().float()

    # the buffers are arguments, not captured: BatchNorm updates them in place (copies, see above)
    def batch_loss(p: dict, eps: torch.Tensor, lam: torch.Tensor, buf: dict) -> torch.Tensor:
        mixed = target if pseudo is None else lam[:, None] * target + (1.0 - lam[:, None]) * pseudo  # Eq. 5
        logits = functional_call(model, (p, buf), (x,))
        return (eps * a * soft_ce(logits, mixed)).sum()  # Eq. 1, on the losses aᵢ·Lᵢ

    def probe_loss(eps: torch.Tensor, lam: torch.Tensor, buf: dict) -> torch.Tensor:
        g = grad(batch_loss)(params, eps, lam, buf)
        stepped = sgd_lookahead(model, params, g, lr, sgd)  # Θ_{t+1}(ω, λ)
        # the probe rides along with the batch, so BatchNorm normalises it with the batch's statistics
        # (a probe of a few samples would otherwise get statistics of its own, far from the training ones)
        logits = functional_call(model, (stepped, buf), (torch.cat([x, probe_x]),))[b:]
        return F.cross_entropy(logits.float(), probe_y)  # Eq. 2

    d_eps, d_lam = grad(probe_loss, argnums=(0, 1))(eps, lam, buffers)
    w = torch.clamp(-d_eps, min=0.0) * a  # ω*ᵢ·aᵢ: the weight on Lᵢ itself
    total = w.sum()
    w = w / total if total > 0 else torch.zeros_like(w)
    keep = (-d_lam > 0) if pseudo is not None else None  # Eq. 6: [sign(−∂L_p/∂λ)]₊
    return MetaCoefficients(w.detach(), None if keep is None else keep.detach())


class WeightAverage:
    """Per-sample exponential average of the meta weights over the epochs (``--meta-average``).

    On each visit of sample i: ``m_i ← α·m_i + (1 − α)·B·ω*_i`` (B·ω* is 1 on average, so samples of
    batches of different sizes compare), ``m̂_i = m_i / (1 − α^{t_i})`` after t_i visits (the bias correction
    of Adam, Kingma & Ba 2015, Alg. 1), and the batch's weights are m̂ normalised to sum to 1 (all 0 when
    every m̂ is 0, as for ω*). A sample whose ω* is always 0 keeps weight 0, as in plain L2R.
    """

    def __init__(self, n: int, decay: float, device=None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.mean = torch.zeros(n, device=device)  # (N,) m, biased towards 0
        self.visits = torch.zeros(n, device=device)  # (N,) t

    def state(self) -> dict:
        return {"mean": self.mean, "visits": self.visits}

    def load_state(self, state: dict) -> None:
        self.mean.copy_(state["mean"])
        self.visits.copy_(state["visits"])

    def __call__(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """ids (B,) long sample indices, weights (B,) ω* summing to 1 or all 0 → (B,) averaged weights."""
        m = self.decay * self.mean[ids] + (1.0 - self.decay) * weights.detach() * len(ids)
        self.mean[ids] = m
        self.visits[ids] += 1
        corrected = m / (1.0 - self.decay ** self.visits[ids])
        total = corrected.sum()
        return corrected / total if total > 0 else torch.zeros_like(corrected)


def kl_consistency(logits: torch.Tensor, logits_hat: torch.Tensor) -> torch.Tensor:
    """IEG Eq. 4: ``1/N Σ_i KL(Φ(x_i) ‖ Φ(x̂_i))`` for logits (N, K) of two views; gradients flow through
    both, as Eq. 4 minimises it over Θ. → scalar."""
    log_p = F.log_softmax(logits.float(), dim=1)
    log_q = F.log_softmax(logits_hat.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def arcsine(generator: torch.Generator) -> float:
    """One draw of Beta(0.5, 0.5), the mixup factor of IEG Eq. 9: its CDF is (2/π)·arcsin(√β), so
    β = sin²(πu/2) for u uniform on [0, 1), drawn from ``generator`` (seeded runs repeat)."""
    u = torch.rand((), device=generator.device, generator=generator)
    return float(torch.sin(0.5 * torch.pi * u) ** 2)


def mix(t: torch.Tensor, perm: torch.Tensor, beta: float) -> torch.Tensor:
    """IEG Eq. 9's pairwise mixup: ``Mix_β(a, b) = β·a + (1 − β)·b``, pairing each row a of ``t`` (N, ...)
    with the row b at its place in the permutation ``perm`` (N,); applied alike to inputs and targets."""
    return beta * t + (1.0 - beta) * t[perm]


class MetaLog:
    """What the meta step did, for metrics.json and the model folder's meta_weights.parquet.

    Per step: the effective sample size of ω*, ``(Σω)² / Σω² / B`` (1 when every sample weighs the same,
    1/B when one sample carries the batch; Kish 1965), and the share of the batch at weight 0, averaged
    per epoch. Per sample: the mean of B·ω* over its visits (1 = an average sample; 0 = never kept), that
    of its last visit, and with meta re-labeling the share of visits whose λ* kept the given label.
    """

    def __init__(self, n: int, device=None):
        self.total = torch.zeros(n, device=device)  # (N,) Σ B·ω*
        self.last = torch.full((n,), float("nan"), device=device)  # (N,) B·ω* of the last visit
        self.visits = torch.zeros(n, device=device)  # (N,)
        self.kept = torch.zeros(n, device=device)  # (N,) visits with λ* > 0
        self._ess, self._zero = [], []

    def __call__(self, ids: torch.Tensor, coef: MetaCoefficients) -> None:
        w = coef.weights.detach().float()
        b = w.shape[0]
        self.total[ids] += w * b
        self.last[ids] = w * b
        self.visits[ids] += 1
        if coef.keep_given is not None:
            self.kept[ids] += coef.keep_given.float()
        square = (w * w).sum()
        self._ess.append(torch.where(square > 0, w.sum() ** 2 / square.clamp_min(1e-30) / b, square.new_zeros(())))
        self._zero.append((w == 0).float().mean())

    def state(self) -> dict:
        """The per-sample records (the epoch means start anew after every epoch, so none is pending)."""
        return {"total": self.total, "last": self.last, "visits": self.visits, "kept": self.kept}

    def load_state(self, state: dict) -> None:
        for name in ("total", "last", "visits", "kept"):
            getattr(self, name).copy_(state[name])

    def epoch(self) -> dict:
        """The epoch's mean effective sample size (share of B) and share at weight 0; then starts anew."""
        if not self._ess:
            return {}
        out = {"meta_ess": float(torch.stack(self._ess).mean()),
               "meta_zero_share": float(torch.stack(self._zero).mean())}
        self._ess, self._zero = [], []
        return out

    def per_sample(self, relabel: bool) -> dict:
        """Columns per sample (NaN for a sample never visited)."""
        seen = self.visits > 0
        nan = torch.full_like(self.total, float("nan"))
        cols = {"meta_weight": torch.where(seen, self.total / self.visits.clamp_min(1), nan),
                "meta_weight_last": self.last}
        if relabel:
            cols["given_label_kept"] = torch.where(seen, self.kept / self.visits.clamp_min(1), nan)
        return {k: v.cpu().double().numpy() for k, v in cols.items()}  # name → (N,) float64


def meta_loss(model, x, target, raw, augment: str, gen, probe_images, probe_labels, normalise,
               config: TrainConfig, *, lr: float, prior=None, average=None, ids=None, sgd=None):
    """The step's loss with IEG's data coefficients (meta.py).

    meta_reweight: ``L_ω* = Σ ω*_i L(y_i, Φ(x_i))`` (IEG Eq. 1–2, L2R). meta_relabel: IEG Eq. 8,
    ``L_ω* + L_λ*`` with ``L_ω* = Σ ω*_i L(P(λ₀), Φ(x_i))`` and ``L_λ* = Σ (1/B) L(y*_i, Φ(x_i))``, y* the
    given label where λ* > 0 and the pseudo label g(x) (Eq. 3) otherwise (Eq. 7). The probe batch is a
    random draw of ``probe_batch`` trusted samples, augmented like the training batch. ``prior`` (B,): the
    audit's weights with ``--weights`` (meta re-weighting of the audit-weighted losses, meta.py), else None.
    ``average`` (meta.WeightAverage) with the batch's sample ``ids``: ω* replaced by its per-sample average.
    ``sgd``: the optimiser, whose next step the virtual step follows with ``meta_momentum``.
    With ``meta_kl`` k / ``meta_mixup`` p, Algorithm 1 step 6: ``+ L_pβ + p·L_uβ + k·L_KL`` (Eq. 4 and 9,
    meta.py), the batch, its strong view x̂ and the mixed pool in one forward pass. → (loss, coefficients).
    """
    import torch


    m = probe_images.shape[0]
    pick = torch.randperm(m, device=probe_images.device, generator=gen)[:config.probe_batch] \
        if m > config.probe_batch else torch.arange(m, device=probe_images.device)
    probe_x = normalise(augment_batch(probe_images[pick], augment, gen))
    b = x.shape[0]
    strong = config.meta_kl > 0 or config.meta_mixup > 0
    inputs = [x]
    if strong:  # x̂: the standard augmentation, then cutout (IEG Sec. 5.1 without the learned policy, Sec. 6)
        inputs.append(cutout_batch(normalise(augment_batch(raw, augment, gen)), gen))
    beta = None
    if config.meta_mixup:  # Eq. 9's inputs: the pool D_p ∪ D_u ∪ D̂_u, mixed with a permutation of itself
        beta = arcsine(gen)
        pool = torch.cat([probe_x, x, inputs[1]])
        perm = torch.randperm(pool.shape[0], device=pool.device, generator=gen)
        inputs.append(mix(pool, perm, beta))
    out = model(torch.cat(inputs) if len(inputs) > 1 else x).float()  # the step's one forward pass
    logits = out[:b]  # (B, K), also the first view of the pseudo label
    pseudo = None
    if config.meta_relabel or strong:  # g(x): the mean softmax over the views, sharpened (Eq. 3)
        views = torch.softmax(out[:(2 if strong else 1) * b].detach(), dim=1).split(b)  # x, and x̂ if any
        pseudo = pseudo_label(model, raw, normalise, augment, config.pseudo_k, gen, first=views)
    coef = meta_coefficients(model, x, target, probe_x, probe_labels[pick], lr=lr,
                             pseudo=pseudo if config.meta_relabel else None, prior=prior,
                             sgd=sgd if config.meta_momentum else None)
    if average is not None:
        coef = dataclasses.replace(coef, weights=average(ids, coef.weights))
    log_p = torch.log_softmax(logits, dim=1)  # (B, K)
    if config.meta_relabel:
        mixed = LAMBDA0 * target + (1.0 - LAMBDA0) * pseudo  # P(λ₀)
        chosen = torch.where(coef.keep_given[:, None], target, pseudo)  # y*
        loss = -(coef.weights * (mixed * log_p).sum(dim=1)).sum() - (chosen * log_p).sum(dim=1).mean()
    else:
        loss = -(coef.weights * (target * log_p).sum(dim=1)).sum()
    if config.meta_kl:
        loss = loss + config.meta_kl * kl_consistency(logits, out[b:2 * b])
    if config.meta_mixup:
        k = logits.shape[1]
        probe_y = torch.nn.functional.one_hot(probe_labels[pick], k).float()
        mixed_y = mix(torch.cat([probe_y, pseudo, pseudo]), perm, beta)
        ce = soft_ce(out[2 * b:], mixed_y)  # (M + 2B,)
        mp = probe_x.shape[0]
        loss = loss + ce[:mp].mean() + config.meta_mixup * ce[mp:].mean()  # L_pβ + p·L_uβ
    return loss, coef
