"""Stage 3 plumbing that every training loop here shares: the proxy (proxy.py), the LIMIT pair
(limit.py) and the second run (train.py).

- The decoded dataset goes to the device once, as uint8 (N, 3, S, S): cheaper to move and augment
  than floats; batches are normalised to float after augmentation.
- Each epoch visits a fresh permutation in near-equal batches; the permutation is drawn on the CPU
  (same order on every device), augmentation draws from a generator on the device.
- Networks live on the device in channels_last; autocast is bf16/fp16 on CUDA, off on the CPU.
- Evaluation runs the network in eval mode over un-augmented images in large batches.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .models import build_model


def device_images(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, S, S, 3) uint8 array → (N, 3, S, S) uint8 tensor on ``device``."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)


def device_labels(labels, device: torch.device) -> torch.Tensor:
    """(N,) class indices → int64 tensor on ``device``."""
    return torch.tensor(np.asarray(labels, dtype=np.int64), device=device)  # a copy: the array may be read-only


def device_model(name: str, num_classes: int, device: torch.device) -> nn.Module:
    """A freshly initialised network (models.MODELS) on ``device``, channels_last."""
    return build_model(name, num_classes).to(device).to(memory_format=torch.channels_last)


def compiled(model: nn.Module, enabled: bool):
    """``torch.compile(model)`` when enabled (``--compile``), else the module itself; either way it is
    called like the module and shares its parameters, so optimisers, checkpoints and state_dicts use
    the plain module. Compiling costs tens of seconds up front and pays off on long GPU runs."""
    if not enabled:
        return model
    import torch

    return torch.compile(model)


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of a (N, 3, S, S) uint8 tensor, in 0..255 units, shaped (1, 3, 1, 1)."""
    x = images.float() if images.numel() < 50_000_000 else images[:: max(1, images.shape[0] // 20000)].float()
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1.0)
    return mean, std


class Normalise:
    """uint8 batch (B, 3, S, S) → float (x − mean) / std, channels_last; mean and std (1, 3, 1, 1)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean, self.std = mean, std

    @classmethod
    def of(cls, images: torch.Tensor) -> "Normalise":
        """With the channel statistics of ``images`` (on their device)."""
        mean, std = channel_stats(images)
        return cls(mean.to(images.device), std.to(images.device))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return ((batch.float() - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, -(-n // batch_size))


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """A random permutation of 0..n-1 split into ceil(n / batch_size) near-equal batches, so no batch
    is a lone sample (BatchNorm needs two) and every sample is seen — and recorded — every epoch."""
    perm = torch.randperm(n, generator=generator, device="cpu").to(device)
    return list(torch.tensor_split(perm, steps_per_epoch(n, batch_size)))


def seeded_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(augmentation generator on ``device``, batch-order generator on the CPU), both seeded."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    order = torch.Generator(device="cpu")
    order.manual_seed(seed)
    return gen, order


def autocast_for(device: torch.device) -> torch.autocast:
    """bf16 (fp16 where bf16 is missing) autocast on CUDA; disabled on the CPU, where bf16 is slower
    on most machines. One context object, reusable for every forward pass of a run."""
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=cuda)


@torch.no_grad()
def batched_logits(model: nn.Module, images: torch.Tensor, normalise: Normalise, batch_size: int,
                   autocast: torch.autocast) -> torch.Tensor:
    """``model``'s float32 logits (N, K) on un-augmented uint8 ``images`` (N, 3, S, S), in eval mode
    (the model's mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    out = []
    for ids in torch.arange(images.shape[0], device=images.device).split(max(batch_size, 256)):
        with autocast:
            out.append(model(normalise(images[ids])).float())
    model.train(was_training)
    return torch.cat(out)
