"""Stage 3b — batched augmentation on the device: random translation (crop from a reflect-padded
image) and horizontal flip, as tensor ops over the whole batch (no per-sample Python).

Flip is on by default (``crop+flip``) for photos; datasets whose classes are not mirror-symmetric
(digits, text, Roman numerals: a mirrored "iv" reads "vi") should use ``crop``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTS = ("crop+flip", "crop", "none")


def augment_batch(x: torch.Tensor, name: str, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Augment a (B, C, S, S) batch (any dtype) on its device; returns a new tensor of the same shape.

    ``crop``: each image is shifted by an independent offset in [-pad, pad]² (reflect padding);
    ``flip``: each image is mirrored left-right with probability 1/2.
    """
    if name == "none" or x.shape[0] == 0:
        return x
    B, C, S, _ = x.shape
    dev = x.device
    if pad > 0:
        padded = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)  # (B, C, S+2p, S+2p)
        oy = torch.randint(0, 2 * pad + 1, (B,), device=dev, generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (B,), device=dev, generator=generator)
        ar = torch.arange(S, device=dev)
        rows = (oy[:, None] + ar[None, :])[:, None, :, None]  # (B, 1, S, 1)
        cols = (ox[:, None] + ar[None, :])[:, None, None, :]  # (B, 1, 1, S)
        b = torch.arange(B, device=dev)[:, None, None, None]
        c = torch.arange(C, device=dev)[None, :, None, None]
        x = padded[b, c, rows, cols]  # (B, C, S, S)
    if name == "crop+flip":
        flip = torch.rand(B, device=dev, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def cutout_batch(x: torch.Tensor, generator: torch.Generator, size: int | None = None) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): zero one ``size``² square per image, centred uniformly on the image
    and clipped at its border, as IEG's strong views x̂ use it (flip → crop → cutout, IEG Sec. 5.1/6).
    (B, C, S, S) any dtype → a new tensor of the same shape; ``size`` defaults to S/2 (16 px at 32)."""
    B, _, S, _ = x.shape
    if B == 0:
        return x
    size = max(1, S // 2) if size is None else size
    dev = x.device
    cy = torch.randint(0, S, (B,), device=dev, generator=generator)
    cx = torch.randint(0, S, (B,), device=dev, generator=generator)
    ar = torch.arange(S, device=dev)
    lo = size // 2
    inside_y = (ar[None, :] >= (cy - lo)[:, None]) & (ar[None, :] < (cy - lo + size)[:, None])  # (B, S)
    inside_x = (ar[None, :] >= (cx - lo)[:, None]) & (ar[None, :] < (cx - lo + size)[:, None])  # (B, S)
    hole = inside_y[:, None, :, None] & inside_x[:, None, None, :]  # (B, 1, S, S)
    return torch.where(hole, torch.zeros((), dtype=x.dtype, device=dev), x)
