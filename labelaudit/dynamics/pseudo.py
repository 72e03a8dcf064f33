"""Pseudo labels from the trained proxy (IEG, Zhang et al., CVPR 2020, Eq. 3): the prediction averaged
over K augmentations of the input, sharpened with temperature τ = 0.5. The scan's ``predicted_label``
with ``pseudo_labels="augment"``, and the meta step's relabelling in ``labelaudit train``.
"""
from __future__ import annotations

import numpy as np

from ..training.loop import model_device, to_device

TAU = 0.5  # IEG's sharpening temperature (Sec. 4.1)


def sharpen(probs, tau: float = TAU):
    """IEG Eq. 3's sharpening: ``p_i^(1/τ) / Σ_j p_j^(1/τ)`` along the last axis (NumPy or torch)."""
    powered = probs ** (1.0 / tau)
    return powered / powered.sum(-1, keepdims=True) if isinstance(probs, np.ndarray) \
        else powered / powered.sum(-1, keepdim=True)


def pseudo_label(model, batch, normalise, augment: str, k: int, generator, *, first=(), autocast=None,
                 tau: float = TAU):
    """IEG Eq. 3 for one uint8 batch (B, 3, S, S): ``g(x) = sharpen((Φ(x) + Σ_{k=1}^{K−1} Φ(x̂_k)) / K, τ)``,
    Φ the softmax of ``model`` and x̂_k random augmentations (augment.py). ``first``: Φ of the views the
    caller already has (train's augmented batch, and its strong view with IEG Sec. 4.2), counted towards
    K; without them, Φ of the un-augmented batch is the first view. No gradients; the model's mode is the
    caller's. → (B, K) float."""
    import contextlib

    import torch

    from ..training.augment import augment_batch

    autocast = autocast or contextlib.nullcontext()

    def softmax(x):
        with autocast:
            return torch.softmax(model(normalise(x)).float(), dim=1)

    views = list(first)
    with torch.no_grad():
        total = sum(v.detach().float() for v in views) if views else softmax(batch)
        for _ in range(k - max(len(views), 1)):
            total = total + softmax(augment_batch(batch, augment, generator))
    return sharpen(total / max(k, len(views)), tau)


def augmented_pseudo_labels(model, images, normalise, augment: str, k: int, generator, batch_size: int,
                            autocast, tau: float = TAU):
    """:func:`pseudo_label` of every image (N, 3, S, S) uint8, the model in eval mode, in batches → (N, K)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        device = model_device(model)
        return torch.cat([pseudo_label(model, to_device(images[ids], device), normalise, augment, k, generator,
                                       autocast=autocast, tau=tau)
                          for ids in torch.arange(images.shape[0], device=images.device).split(batch_size)])
    finally:
        model.train(was_training)
