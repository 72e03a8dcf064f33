"""Stage 3 — proxy training: a small network trained from scratch on the given labels, with a
constant learning rate (the AUL paper measures loss curves before the first learning-rate drop,
Sec. 3 and 5), recording every sample's loss and margin in every epoch.

Speed choices, one line each:
- The whole decoded dataset sits on the device as uint8 (N, 3, S, S): it is faster to move and
  augment uint8 than preprocessed floats, and the hot loop never touches the file system.
- Augmentation is batched tensor ops on the device (augment.py).
- Per-sample losses come from ``cross_entropy(reduction='none')`` of the training forward pass.
- channels_last everywhere (faster convolutions on CUDA and oneDNN alike); bf16 autocast on CUDA,
  float32 on the CPU (CPU bf16 is slower on most CPUs).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .progress import Progress
from .augment import augment_batch
from .errors import TrainingError
from .limit import LimitPair, LimitSettings
from .loop import Normalise, autocast_for, device_model, epoch_batches, seeded_generators, steps_per_epoch
from .recorders import Dynamics, Recorder


@dataclass(frozen=True)
class ProxySettings:
    model: str = "small"  # network name, see models.MODELS
    epochs: int = 15  # passes over the data; AUL integrates the loss over all of them
    batch_size: int = 128  # samples per step
    lr: float = 0.05  # SGD learning rate, constant (no schedule: AUL is read before any drop)
    momentum: float = 0.9  # SGD Nesterov momentum
    weight_decay: float = 5e-4  # L2 on all weights
    augment: str = "crop+flip"  # crop+flip | crop | none (augment.py)
    seed: int = 0  # model init, data order and augmentation


def train_proxy(images: torch.Tensor, labels: torch.Tensor, num_classes: int, settings: ProxySettings,
                *, device: torch.device, progress: Progress | None = None,
                keep_epoch_probs: bool = False, limit: LimitSettings | None = None) -> Dynamics:
    """Train the proxy on ``images`` (N, 3, S, S) uint8 and ``labels`` (N,) int64, both on ``device``.

    With ``limit``, the LIMIT pair (limit.py) trains on the same augmented batches, and the dynamics
    carry its distances. Returns the recorded dynamics. Raises TrainingError when the loss stops
    being finite.
    """
    n = images.shape[0]
    torch.manual_seed(settings.seed)
    model = device_model(settings.model, num_classes, device)
    pair = None if limit is None else LimitPair(limit.model, num_classes, limit, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                          nesterov=True, weight_decay=settings.weight_decay)
    normalise = Normalise.of(images)
    gen, order_gen = seeded_generators(settings.seed, device)
    rec = Recorder(n, num_classes, settings.epochs, device, keep_epoch_probs=keep_epoch_probs, limit=pair is not None)
    autocast = autocast_for(device)

    total = settings.epochs * steps_per_epoch(n, settings.batch_size)
    done, t0 = 0, time.perf_counter()
    model.train()
    for epoch in range(settings.epochs):
        loss_sum = torch.zeros((), device=device)
        for ids in epoch_batches(n, settings.batch_size, order_gen, device):
            # --- data: uint8 → augment → float, normalised
            x = normalise(augment_batch(images[ids], settings.augment, gen))  # (B, 3, S, S)
            y = labels[ids]
            # --- forward, per-sample loss, backward
            with autocast:
                logits = model(x)  # (B, K)
            loss_i = F.cross_entropy(logits.float(), y, reduction="none")  # (B,)
            loss = loss_i.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # --- record from the same forward pass
            rec.record(epoch, ids, logits.detach(), y, loss_i.detach())
            # --- the LIMIT pair, same batch (its own forward and backward passes)
            if pair is not None:
                rec.record_limit(epoch, ids, pair.step(x, y, autocast))
            loss_sum += loss.detach() * len(ids)
            done += 1
            if progress is not None:
                progress("train", done, total, {"epoch": epoch + 1, "epochs": settings.epochs})
        rec.end_epoch()
        mean_loss = float(loss_sum) / n  # one host sync per epoch
        if not math.isfinite(mean_loss):
            raise TrainingError(f"training loss became {mean_loss} in epoch {epoch + 1}; the learning rate "
                                f"is probably too high: lower --lr (now {settings.lr}) and scan again")
        if progress is not None:
            seen = (epoch + 1) * n
            progress("train", done, total, {"epoch": epoch + 1, "epochs": settings.epochs, "loss": mean_loss,
                                            "images_per_s": seen / max(time.perf_counter() - t0, 1e-9)})
    if pair is not None:  # LIMIT's score: q in eval mode on un-augmented images (Sec. 4.1)
        rec.limit_final = pair.distance(images, labels, normalise, settings.batch_size, autocast)
    return rec.dynamics()
