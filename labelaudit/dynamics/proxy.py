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

How long: ``--epochs auto`` (the default) trains at least 15 and at most 30 epochs and stops at the
onset of memorisation (noise/stopping.py): a network fits the correctly labelled samples
first and the mislabeled ones later (Arpit et al. 2017; the AUL paper's premise, Sec. 3), so once
it agrees with more given labels than the noise model believes correct, further epochs only teach it
the wrong labels and blur the scores. Measured in benchmarks/epochs.py: the digits sets stop at 15,
where their AUROC is at its best, the CIFAR-10 sets run 25–30 epochs and gain 0.005–0.03 AUROC.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import Progress
from ..training.augment import augment_batch
from ..training.checkpoint import Checkpointer
from ..errors import TrainingError
from .limit import LimitPair, LimitSettings
from ..training.loop import (Normalise, autocast_for, compiled, device_model, epoch_batches, seeded_generators,
    steps_per_epoch)
from .recorders import Dynamics, Recorder
from .pseudo import augmented_pseudo_labels


StopRule = Callable[[np.ndarray, np.ndarray], dict]  # (margins (e, N), given (N,)) → {"memorising": bool, ...}
AUTO_EPOCHS = (15, 30)  # --epochs auto: the fewest and the most epochs (benchmarks/epochs.py)


@dataclass(frozen=True)
class ProxySettings:
    model: str = "small"  # network name, see models.MODELS
    epochs: int = AUTO_EPOCHS[1]  # passes over the data (the most, with stop_from); AUL integrates the loss over them
    stop_from: int | None = AUTO_EPOCHS[0]  # from this epoch on, stop at the onset of memorisation; None = all epochs
    batch_size: int = 128  # samples per step
    lr: float = 0.05  # SGD learning rate, constant (no schedule: AUL is read before any drop)
    momentum: float = 0.9  # SGD Nesterov momentum
    weight_decay: float = 5e-4  # L2 on all weights
    augment: str = "crop+flip"  # crop+flip | crop | none (augment.py)
    seed: int = 0  # model init, data order and augmentation
    compile: bool = False  # torch.compile the network for the training loop (loop.compiled)


def train_proxy(images: torch.Tensor, labels: torch.Tensor, num_classes: int, settings: ProxySettings,
                *, device: torch.device, progress: Progress | None = None,
                keep_epoch_probs: bool = False, limit: LimitSettings | None = None,
                checkpoint: Checkpointer | None = None, pseudo_k: int = 0,
                stop_rule: StopRule | None = None,
                on_trained: Callable[[torch.nn.Module, Normalise], None] | None = None) -> Dynamics:
    """Train the proxy on ``images`` (N, 3, S, S) uint8 and ``labels`` (N,) int64, both on ``device``.

    With ``limit``, the LIMIT pair (limit.py) trains on the same augmented batches, and the dynamics
    carry its distances. With ``checkpoint``, the whole state is saved after every epoch, and a
    saved state is resumed from when ``checkpoint.resume`` (checkpoint.py). With ``pseudo_k``, the
    trained proxy's pseudo labels by IEG Eq. 3 (trusted.py) are added. ``on_trained(model, normalise)``
    is called with the trained network (benchmarks predict held-out folds with it). With
    ``settings.stop_from``, ``stop_rule(margins so far (e, N), given labels (N,))`` is asked before every
    epoch from then on and ends training when its answer's ``"memorising"`` is true
    (noise/stopping.py's ``memorisation_check``; ``Dynamics.stopped`` holds the answer). Returns the
    recorded dynamics. Raises TrainingError when the loss stops being finite.
    """
    n = images.shape[0]
    if settings.stop_from is not None and settings.stop_from < settings.epochs and stop_rule is None:
        raise ValueError(f"stop_from={settings.stop_from} needs a stop_rule (labelaudit.noise.stopping."
                         "memorisation_check), or stop_from=None for exactly settings.epochs epochs")
    torch.manual_seed(settings.seed)
    model = device_model(settings.model, num_classes, device)
    pair = None if limit is None else LimitPair(limit.model, num_classes, limit, device=device,
                                                steps_per_epoch=steps_per_epoch(n, settings.batch_size))
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                          nesterov=True, weight_decay=settings.weight_decay)
    normalise = Normalise.of(images)
    gen, order_gen = seeded_generators(settings.seed, device)
    rec = Recorder(n, num_classes, settings.epochs, device, keep_epoch_probs=keep_epoch_probs, limit=pair is not None)
    autocast = autocast_for(device)

    start = 0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        start = _restore(saved, model=model, opt=opt, pair=pair, rec=rec, gen=gen, order_gen=order_gen)
    total = settings.epochs * steps_per_epoch(n, settings.batch_size)
    done, t0 = start * steps_per_epoch(n, settings.batch_size), time.perf_counter()
    net = compiled(model, settings.compile)  # the training forward; `model` holds the parameters
    model.train()
    stop = None
    given = labels.cpu().numpy()  # the stopping check's noise model reads the given labels too
    for epoch in range(start, settings.epochs):
        # checked before an epoch, not after, so a resumed run re-takes the decision it had taken
        if settings.stop_from is not None and epoch >= settings.stop_from:
            check = stop_rule(rec.margin[:epoch].cpu().numpy(), given)
            if check["memorising"]:
                stop = check
                if progress is not None:  # the bar ends full: the run is complete, just shorter
                    progress("train", done, done, {"epoch": epoch, "epochs": epoch})
                break
        loss_sum = torch.zeros((), device=device)
        for ids in epoch_batches(n, settings.batch_size, order_gen, device):
            # --- data: uint8 → augment → float, normalised
            x = normalise(augment_batch(images[ids], settings.augment, gen))  # (B, 3, S, S)
            y = labels[ids]
            # --- forward, per-sample loss, backward
            with autocast:
                logits = net(x)  # (B, K)
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
                                f"is probably too high: lower --lr (now {settings.lr:g}) and scan again")
        if checkpoint is not None:
            checkpoint.save(_state(epoch + 1, model=model, opt=opt, pair=pair, rec=rec, gen=gen, order_gen=order_gen))
        if progress is not None:
            seen = (epoch + 1 - start) * n
            progress("train", done, total, {"epoch": epoch + 1, "epochs": settings.epochs, "loss": mean_loss,
                                            "images_per_s": seen / max(time.perf_counter() - t0, 1e-9)})
    if pair is not None:  # LIMIT's score: q in eval mode on un-augmented images (Sec. 4.1)
        rec.limit_final = pair.distance(images, labels, normalise, settings.batch_size, autocast)
    if on_trained is not None:
        on_trained(model, normalise)
    dyn = rec.dynamics()
    dyn.resumed_from_epoch = start
    dyn.stopped = stop
    if pseudo_k:
        dyn.pseudo_probs = augmented_pseudo_labels(model, images, normalise, settings.augment, pseudo_k, gen,
                                                   settings.batch_size, autocast).cpu().numpy()
    return dyn


def _state(epochs_done: int, *, model, opt, pair: LimitPair | None, rec: Recorder, gen, order_gen) -> dict:
    """Everything the loop needs to go on after ``epochs_done`` epochs, as tensors and numbers."""
    return {
        "epoch": epochs_done,
        "model": model.state_dict(), "opt": opt.state_dict(),
        "limit": None if pair is None else pair.state_dict(),
        "rng": {"global": torch.get_rng_state(), "augment": gen.get_state(), "order": order_gen.get_state()},
        "recorder": rec.state(),
    }


def _restore(state: dict, *, model, opt, pair: LimitPair | None, rec: Recorder, gen, order_gen) -> int:
    """Load a :func:`_state` back; returns the number of epochs it had finished. The checkpoint's key
    (settings, LIMIT's included, and data) was checked when it was loaded, so the parts match."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    if pair is not None:
        pair.load_state_dict(state["limit"])
    torch.set_rng_state(state["rng"]["global"])
    gen.set_state(state["rng"]["augment"])
    order_gen.set_state(state["rng"]["order"])
    rec.load_state(state["recorder"])
    return int(state["epoch"])
