"""The one training loop, for the scan's proxy (dynamics/proxy.py) and ``labelaudit train``
(robust/fit.py), and the plumbing around it.

:func:`train_epochs` runs the epochs: batches of a seeded permutation, augmentation on the device,
one step function that returns the loss (the caller's: plain cross-entropy for the proxy, the robust
methods' targets and weights for the second run), the optimiser step under one precision policy,
and :class:`Hook` objects that plug in what each run needs (recorders, LIMIT, a stopping rule, a
schedule, a momentum model, evaluation). After every epoch the whole state (network, optimiser,
random generators, every hook's state) goes to the run's checkpoint, so both commands resume.

- The decoded dataset goes to the device once, as uint8 (N, 3, S, S): cheaper to move and augment
  than floats; batches are normalised to float after augmentation.
- Each epoch visits a fresh permutation in near-equal batches; the permutation is drawn on the CPU
  (same order on every device), augmentation draws from a generator on the device.
- Networks live on the device in channels_last. Precision (:func:`precision_for`): bf16 autocast on
  CUDA where supported, fp16 with a GradScaler on older GPUs, float32 on the CPU.
- Evaluation runs the network in eval mode over un-augmented images in large batches.
- Under torchrun (distributed.py) each global batch is augmented whole on every rank and split
  across the ranks, each rank's loss weighted by its share, DDP averaging the gradients; only rank 0
  checkpoints.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DeviceMemoryError, TrainingError
from ..progress import Progress
from .augment import augment_batch
from .checkpoint import Checkpointer
from .distributed import all_sum, current, shard
from .backbones import build_network


DATA_SHARE = 0.5  # a GPU holds the decoded dataset when it takes at most this share of its free memory


def device_images(images: np.ndarray, device: torch.device, max_bytes: int | None = None) -> torch.Tensor:
    """(N, S, S, 3) uint8 array → (N, 3, S, S) uint8 tensor in channels_last (the array's own layout).

    On the CPU the tensor shares the array's memory, so the dataset is never held twice (a read-only,
    memory-mapped array too: training only reads the images). On a GPU the dataset is copied there
    once when it takes at most DATA_SHARE of the free memory (or ``max_bytes``); a larger one stays in
    host memory and every batch goes to the GPU as it is drawn (:func:`to_device`)."""
    import warnings

    with warnings.catch_warnings():  # from_numpy warns on read-only arrays; nothing here writes to them
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    if device.type == "cuda":
        room = DATA_SHARE * torch.cuda.mem_get_info(device)[0] if max_bytes is None else max_bytes
        if images.nbytes > room:
            return tensor  # host memory: batches are copied to the device as they are drawn
    return tensor.to(device)


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live."""
    return next(model.parameters()).device


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device`` (itself when it is there already): a batch of a dataset kept in host memory."""
    return tensor if tensor.device == device else tensor.to(device, non_blocking=True)


def device_labels(labels, device: torch.device) -> torch.Tensor:
    """(N,) class indices → int64 tensor on ``device``."""
    return torch.tensor(np.asarray(labels, dtype=np.int64), device=device)  # a copy: the array may be read-only


def device_model(name: str, num_classes: int, device: torch.device, pretrained=None) -> nn.Module:
    """The network ``name`` (models.MODELS or torchvision's, backbones.py) on ``device``, channels_last:
    freshly initialised, or started from ``pretrained`` (a backbones.Pretrained)."""
    return build_network(name, num_classes, pretrained).to(device).to(memory_format=torch.channels_last)


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
    def of(cls, images: torch.Tensor, device: torch.device | None = None) -> "Normalise":
        """With the channel statistics of ``images``, on ``device`` (None: the images' device)."""
        mean, std = channel_stats(images)
        device = images.device if device is None else device
        return cls(mean.to(device), std.to(device))

    @classmethod
    def given(cls, mean, std, device: torch.device) -> "Normalise":
        """With a given per-channel ``mean`` and ``std`` in 0..1 units (a pretrained network's own)."""
        def channels(values) -> torch.Tensor:
            return torch.tensor([255.0 * float(v) for v in values], device=device).reshape(1, 3, 1, 1)
        return cls(channels(mean), channels(std))

    @classmethod
    def for_network(cls, images: torch.Tensor, pretrained, device: torch.device) -> "Normalise":
        """The input a network expects: the mean and std its weights were trained with (a
        backbones.Pretrained that has them), else the channel statistics of ``images``."""
        if pretrained is not None and pretrained.mean is not None:
            return cls.given(pretrained.mean, pretrained.std, device)
        return cls.of(images, device)

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


@dataclass
class Precision:
    """How a run computes: ``autocast`` for every forward pass, and a GradScaler when that is fp16."""

    autocast: torch.autocast
    name: str  # bfloat16 | float16 | float32
    scaler: "torch.amp.GradScaler | None" = None


def autocast_for(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA devices that support it, fp16 on older GPUs, disabled on the CPU (where
    bf16 is slower on most machines). Evaluation passes use it alone; training adds a scaler."""
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=cuda)


def optimiser_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: "torch.amp.GradScaler | None") -> None:
    """Backpropagate ``loss`` and step ``opt``, through ``scaler`` when there is one (fp16)."""
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
        return
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()


def precision_for(device: torch.device) -> Precision:
    """:func:`autocast_for`, with a GradScaler when that is fp16 (fp16 gradients underflow without one)."""
    autocast = autocast_for(device)
    if device.type != "cuda":
        return Precision(autocast, "float32")
    fp16 = autocast.fast_dtype == torch.float16
    return Precision(autocast, str(autocast.fast_dtype).replace("torch.", ""),
                     torch.amp.GradScaler(device.type) if fp16 else None)


@torch.no_grad()
def batched_logits(model: nn.Module, images: torch.Tensor, normalise: Normalise, batch_size: int,
                   autocast: torch.autocast) -> torch.Tensor:
    """``model``'s float32 logits (N, K) on un-augmented uint8 ``images`` (N, 3, S, S), in eval mode
    (the model's mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    out = []
    for ids in torch.arange(images.shape[0], device=images.device).split(max(batch_size, 256)):
        with autocast:
            out.append(model(normalise(to_device(images[ids], device))).float())
    model.train(was_training)
    return torch.cat(out)


# ------------------------------------------------------------------------------------ the one loop

@dataclass
class StepOutput:
    """What a step function returns: the scalar ``loss`` to minimise, and for the recorders the
    training forward pass's ``logits`` (B, K) and per-sample ``loss_i`` (B,), when it has them. The
    loop sets ``weight``: this rank's share of the global batch times the number of ranks (1 in one
    process), by which a hook that trains a network of its own scales that loss too."""

    loss: torch.Tensor
    logits: torch.Tensor | None = None
    loss_i: torch.Tensor | None = None
    weight: float = 1.0


class Hook:
    """A part of a run that plugs into :func:`train_epochs`; every method is optional."""

    def start(self, model: nn.Module, batches: "Batches") -> None:
        """Called once before training (after a checkpoint was restored) with the network trained."""

    def before_epoch(self, epoch: int) -> dict | None:
        """Called before epoch ``epoch`` (0-based). A dict returned (why) ends the run there."""

    def after_step(self, epoch: int, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None,
                   out: StepOutput) -> None:
        """Called after each optimiser step with the batch's sample ids (B,), its augmented input."""

    def end_epoch(self, epoch: int, mean_loss: float) -> dict | None:
        """Called after epoch ``epoch``; a dict returned is added to the progress report."""

    def state(self) -> dict | None:
        """Tensors and numbers to checkpoint (None: nothing)."""

    def load_state(self, state: dict) -> None:
        """Restore what :meth:`state` returned."""


@dataclass
class Batches:
    """How a run draws its batches: the uint8 images (N, 3, S, S) on the device (or in host memory, with
    ``compute`` the device), their batch size and augmentation, the normaliser, and the augmentation
    (device) and order (CPU) generators."""

    images: torch.Tensor
    batch_size: int
    augment: str
    normalise: Normalise
    gen: torch.Generator
    order_gen: torch.Generator
    compute: torch.device | None = None  # where training runs, when the images stay in host memory

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device if self.compute is None else self.compute


def _oom_types() -> tuple[type, ...]:
    return tuple({getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError})


def train_epochs(model: nn.Module, opt: torch.optim.Optimizer, batches: Batches,
                 step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], StepOutput], *, epochs: int,
                 labels: torch.Tensor | None = None, hooks: Sequence[Hook] = (), precision: Precision,
                 checkpoint: Checkpointer | None = None, progress: Progress | None = None, stage: str = "train",
                 diverged: str = "lower the learning rate") -> dict:
    """Train ``model`` for ``epochs`` passes over ``batches``; ``step(x, ids, raw)`` computes the loss of
    one augmented, normalised batch x (B, 3, S, S) float, its sample ids (B,) and its uint8 images (the
    caller's forward pass, under ``precision.autocast`` where it wants it). A saved state is resumed from
    when ``checkpoint.resume``; the state is saved after every epoch.

    Returns ``{"start": the epoch resumed from, "epochs_run": epochs trained in all, "stopped": the
    hook's answer that ended the run early, or None}``. Raises TrainingError when the loss stops being
    finite (``diverged`` says what to do), DeviceMemoryError when the device runs out of memory.
    """
    n, per_epoch = batches.n, steps_per_epoch(batches.n, batches.batch_size)
    world = current()
    if world.size > 1 and n // per_epoch < 2 * world.size:
        raise TrainingError(f"batches of {n // per_epoch} samples cannot be split over {world.size} processes "
                            f"(BatchNorm needs two samples on each); raise --batch-size to at least {2 * world.size} "
                            "or start fewer processes")
    start = 0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        start = _restore(saved, model, opt, batches, precision, hooks)
    total, done, t0 = epochs * per_epoch, start * per_epoch, time.perf_counter()
    for h in hooks:
        h.start(model, batches)
    model.train()
    stopped, epoch = None, start
    for epoch in range(start, epochs):
        # asked before an epoch, not after, so a resumed run re-takes the decision it had taken
        answers = [h.before_epoch(epoch) for h in hooks]
        stopped = next((a for a in answers if a is not None), None)
        if stopped is not None:
            if progress is not None:  # the bar ends full: the run is complete, just shorter
                progress(stage, done, done, {"epoch": epoch, "epochs": epoch})
            break
        loss_sum = torch.zeros((), device=batches.device)
        for batch in epoch_batches(n, batches.batch_size, batches.order_gen, batches.images.device):
            # the whole global batch is augmented on every rank (the random numbers of one process),
            # then each rank takes its share
            raw = to_device(batches.images[batch], batches.device)  # (B, 3, S, S) uint8
            ids = to_device(batch, batches.device)
            augmented = augment_batch(raw, batches.augment, batches.gen)
            if world.size > 1:
                part = shard(torch.arange(len(batch), device=ids.device), world)
                ids, raw, augmented = ids[part], raw[part], augmented[part]
            x = batches.normalise(augmented)  # (b, 3, S, S) float
            weight = len(ids) * world.size / len(batch)
            try:
                out = step(x, ids, raw)
                out.weight = weight
                optimiser_step(out.loss * weight if world.size > 1 else out.loss, opt, precision.scaler)
            except _oom_types():
                raise DeviceMemoryError(
                    f"the {batches.device.type.upper()} device ran out of memory in epoch {epoch + 1} at "
                    f"batch size {batches.batch_size}; lower --batch-size (now {batches.batch_size}) or "
                    f"--image-size (now {batches.images.shape[-1]}) and run again") from None
            y = None if labels is None else labels[ids]
            for h in hooks:
                h.after_step(epoch, ids, x, y, out)
            loss_sum += out.loss.detach() * len(ids)
            done += 1
            if progress is not None:
                progress(stage, done, total, {"epoch": epoch + 1, "epochs": epochs})
        all_sum(loss_sum, world)
        mean_loss = float(loss_sum) / n  # one host sync per epoch
        if not math.isfinite(mean_loss):
            raise TrainingError(f"training loss became {mean_loss} in epoch {epoch + 1}; {diverged}")
        info = {"epoch": epoch + 1, "epochs": epochs, "loss": mean_loss}
        for h in hooks:
            info.update(h.end_epoch(epoch, mean_loss) or {})
        if checkpoint is not None and world.main:  # every rank holds the same state; one writes it
            checkpoint.save(_state(epoch + 1, model, opt, batches, precision, hooks))
        if progress is not None:
            info["images_per_s"] = (epoch + 1 - start) * n / max(time.perf_counter() - t0, 1e-9)
            progress(stage, done, total, info)
    else:
        epoch = epochs
    return {"start": start, "epochs_run": epoch, "stopped": stopped}


def _state(epochs_done: int, model, opt, batches: Batches, precision: Precision, hooks: Sequence[Hook]) -> dict:
    """Everything the loop needs to go on after ``epochs_done`` epochs, as tensors and numbers."""
    return {
        "epoch": epochs_done,
        "model": model.state_dict(), "opt": opt.state_dict(),
        "scaler": None if precision.scaler is None else precision.scaler.state_dict(),
        "rng": {"global": torch.get_rng_state(), "augment": batches.gen.get_state(),
                "order": batches.order_gen.get_state()},
        "hooks": [h.state() for h in hooks],
    }


def _restore(state: dict, model, opt, batches: Batches, precision: Precision, hooks: Sequence[Hook]) -> int:
    """Load a :func:`_state` back; returns the number of epochs it had finished. The checkpoint's key
    (settings and data) was checked when it was loaded, so the parts match."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    if precision.scaler is not None and state.get("scaler"):
        precision.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["global"])
    batches.gen.set_state(state["rng"]["augment"])
    batches.order_gen.set_state(state["rng"]["order"])
    for h, saved in zip(hooks, state["hooks"]):
        if saved is not None:
            h.load_state(saved)
    return int(state["epoch"])
