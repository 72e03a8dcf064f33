"""Losses and targets of the second, noise-robust training run (``labelaudit train``).

Pure functions over tensors, each citing the equation it follows. Orientation everywhere:
``T[i, j] = P(noisy label = j | true label = i)``, rows sum to 1.

- ``weighted_ce``: L = Σ wᵢ ℓᵢ / Σ wᵢ with wᵢ = 1 − p(mislabeled), the clean probability (AUL paper
  Sec. 4.2: its printed formula weights by zᵢ, the mislabel probability; its text means 1 − zᵢ).
- ``label_losses``: every label's loss, plain, forward-corrected −log((p̂ᵀ T)[ỹ]) (Patrini Sec. 4.2,
  Theorem 2) or backward-corrected (T⁻¹ ℓ)[ỹ] (Patrini Sec. 4.1, Theorem 1); ``forward_nll`` and
  ``backward_ce`` pick the given label's.
- ``condition_transition``: mix T with the identity until it is well conditioned (Patrini Sec. 4.1:
  "a simple solution is to mix T with the identity matrix before inversion").
- ``sln_targets``: target + σ·z, z ~ N(0, I), fresh per sample and step (SLN paper Eq. 3).
- ``soft_ce``: −Σₖ tₖ log p̂ₖ for soft (possibly negative, SLN) targets.
- ``ema_update``: θ' ← α θ' + (1 − α) θ, the momentum model (SLN paper Sec. 4.1, α = 0.999), with
  ``ema_decay``'s warm-up ramp for short runs.
- ``lc_targets``: ω·y + (1 − ω)·S with ω the min-max normalised loss (SLN paper Sec. 3.3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LC_WEIGHTINGS = ("paper", "reverse")  # SLN-LC's ω as the paper writes it, or 1 − ω


def weighted_mean(loss: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ wᵢ ℓᵢ / Σ wᵢ over the batch (AUL Sec. 4.2). (B,), (B,) → scalar; 0 (not NaN) when every
    weight is 0."""
    return (weights * loss).sum() / weights.sum().clamp_min(1e-12)


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ wᵢ CE(logitsᵢ, yᵢ) / Σ wᵢ over the batch (AUL Sec. 4.2). (B, K), (B,), (B,) → scalar."""
    return weighted_mean(F.cross_entropy(logits.float(), labels, reduction="none"), weights)


CORRECTIONS = ("none", "forward", "backward")


def label_losses(logits: torch.Tensor, correction: str = "none", matrix: torch.Tensor | None = None) -> torch.Tensor:
    """The loss the sample would have under every possible noisy label, (B, K) → (B, K).

    - ``none``: ℓⱼ = −log p̂ⱼ, plain cross-entropy;
    - ``forward`` (``matrix`` = T): ℓⱼ = −log (p̂ᵀ T)ⱼ = −log Σᵢ p̂ᵢ T[i, j] (Patrini Sec. 4.2, Theorem 2):
      p̂ = softmax(logits) estimates the clean posterior, p̂ᵀ T the noisy-label posterior it implies;
    - ``backward`` (``matrix`` = T⁻¹): (T⁻¹ ℓ)ⱼ (Patrini Sec. 4.1, Theorem 1), unbiased and possibly
      negative.

    A target t (one-hot, SLN-noised or label-corrected, (B, K)) gives the per-sample loss Σⱼ tⱼ ℓⱼ.
    """
    if correction == "forward":
        noisy = torch.softmax(logits.float(), dim=1) @ matrix  # (B, K)
        return -torch.log(noisy.clamp_min(1e-12))
    nll = -torch.log_softmax(logits.float(), dim=1)  # (B, K)
    if correction == "backward":
        return nll @ matrix.T  # row b: T⁻¹ ℓ_b
    if correction == "none":
        return nll
    raise ValueError(f"correction {correction!r}: unknown; choose one of {', '.join(CORRECTIONS)}")


def forward_nll(logits: torch.Tensor, labels: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Forward-corrected cross-entropy of the given labels, −log((p̂ᵀ T)[ỹ]). (B, K), (B,), (K, K) → (B,)."""
    return label_losses(logits, "forward", t).gather(1, labels[:, None]).squeeze(1)


def backward_ce(logits: torch.Tensor, labels: torch.Tensor, t_inv: torch.Tensor) -> torch.Tensor:
    """Backward-corrected cross-entropy of the given labels, (T⁻¹ ℓ)[ỹ]. (B, K), (B,), (K, K) = T⁻¹ → (B,).
    Unbiased: its expectation over ỹ ~ T[y, :] is −log p̂_y."""
    return label_losses(logits, "backward", t_inv).gather(1, labels[:, None]).squeeze(1)


def condition_transition(t: torch.Tensor, max_condition: float = 100.0) -> tuple[torch.Tensor, float]:
    """(1 − λ)·T + λ·I with the smallest λ on a 0.05 grid whose condition number ≤ ``max_condition``.

    Returns the matrix and λ (0.0 when T is already well conditioned). Rows still sum to 1.
    """
    eye = torch.eye(t.shape[0], dtype=t.dtype, device=t.device)
    for step in range(21):
        lam = step / 20
        mixed = (1 - lam) * t + lam * eye
        if float(torch.linalg.cond(mixed)) <= max_condition:
            return mixed, lam
    return eye, 1.0


def sln_targets(targets: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """targets + σ·z, z ~ N(0, I) drawn fresh for every sample and call (SLN Eq. 3: noise on the
    one-hot label; here on whatever target the run uses, one-hot or label-corrected). (B, K) → (B, K)."""
    return targets + sigma * torch.randn(targets.shape, device=targets.device, generator=generator)


def soft_ce(logits: torch.Tensor, targets: torch.Tensor, correction: str = "none",
            matrix: torch.Tensor | None = None) -> torch.Tensor:
    """Σₖ tₖ ℓₖ per sample with ℓ = ``label_losses`` (−log p̂ without correction): cross-entropy for
    soft, possibly negative (SLN) targets. (B, K), (B, K) → (B,). Equals cross-entropy for one-hot t."""
    return (targets * label_losses(logits, correction, matrix)).sum(dim=1)


def ema_decay(alpha: float, step: int) -> float:
    """The decay used at optimiser step ``step`` (0-based): min(α, (1 + step) / (10 + step)).

    The SLN paper's α = 0.999 assumes ~10⁵ steps (300 epochs); in a run of a few hundred steps the
    momentum model would still be mostly its random initialisation (0.999⁴⁴⁰ = 0.64 after 440 steps).
    The ramp (TensorFlow's ExponentialMovingAverage with num_updates) starts at 0.1 and reaches α
    after ~10⁴ steps, so short runs average their recent weights and long runs match the paper.
    """
    return min(alpha, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, alpha: float) -> None:
    """θ' ← α θ' + (1 − α) θ for every parameter (SLN Sec. 4.1; pass ``ema_decay(α, step)`` as
    ``alpha`` for the ramp); buffers (BatchNorm statistics) are copied from the model."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(alpha).add_(pm.detach(), alpha=1 - alpha)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def lc_targets(labels: torch.Tensor, probs: torch.Tensor, loss: torch.Tensor, *,
               weighting: str = "paper") -> torch.Tensor:
    """SLN-MO-LC's corrected targets (SLN Sec. 3.3): ω·y + (1 − ω)·S, ω = (ℓ − ℓ_min)/(ℓ_max − ℓ_min).

    labels (N,), probs (N, K) = S, the model's softmax, loss (N,) = its loss on the given label,
    both over the whole training set → (N, K). ``weighting="reverse"`` uses 1 − ω: trust the
    prediction more where the loss is high.
    """
    span = (loss.max() - loss.min()).clamp_min(1e-12)
    w = ((loss - loss.min()) / span)[:, None]  # (N, 1) in [0, 1]
    if weighting == "reverse":
        w = 1 - w
    onehot = F.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return w * onehot + (1 - w) * probs
