"""Stage 3c — recorders: per-sample training dynamics, keyed by sample id, kept on the device.

Filled from the training forward pass itself (no extra pass). Memory is O(N·E) for the loss and
margin trajectories plus O(N·K) for the running probability sum — never O(N·E·K). Under torchrun
each rank records the samples of its share of every batch; after every epoch the epoch's records are
summed over the ranks by sample id (one collective per epoch), and every sample must have been
recorded exactly once in the epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError, TrainingError
from ..training.distributed import World, all_sum
from ..training.loop import Hook, StepOutput


def logit_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AUM's margin: assigned logit minus the largest other logit. (B, K), (B,) → (B,).

    Positive when the network predicts the assigned label; lower = more suspicious.
    """
    assigned = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return assigned - others


@dataclass
class Dynamics:
    """What the proxy run recorded, as NumPy arrays on the host."""

    loss: np.ndarray  # (E, N) float32: training cross-entropy of sample n in epoch e
    margin: np.ndarray  # (E, N) float32: logit margin of sample n in epoch e
    mean_probs: np.ndarray  # (N, K) float32: softmax probabilities averaged over epochs
    limit_epochs: np.ndarray | None = None  # (E, N) float32: LIMIT distance in the training pass, when LIMIT ran
    limit_distance: np.ndarray | None = None  # (N,) float32: LIMIT distance after training, eval mode, no augmentation
    resumed_from_epoch: int = 0  # epochs that came from a checkpoint (scan --resume)
    stopped: dict | None = None  # the stopping rule's answer at the early stop; None = ran every epoch
    pseudo_probs: np.ndarray | None = None  # (N, K) IEG Eq. 3 pseudo labels of the trained proxy, when asked for


class Recorder(Hook):
    """Collects loss, margin and softmax per sample id during training, on ``device``: a hook of the
    training loop (training/loop.py) that reads every step's own forward pass."""

    def __init__(self, n_samples: int, n_classes: int, epochs: int, device: torch.device, *,
                 limit: bool = False, world: World = World()):
        self.loss = torch.full((epochs, n_samples), float("nan"), device=device)
        self.limit = torch.full((epochs, n_samples), float("nan"), device=device) if limit else None
        self.limit_final: torch.Tensor | None = None
        self.margin = torch.full((epochs, n_samples), float("nan"), device=device)
        self.prob_sum = torch.zeros((n_samples, n_classes), device=device)
        self.world = world
        # several ranks: this epoch's probabilities apart, summed over the ranks at the epoch's end
        self._probs = torch.zeros_like(self.prob_sum) if world.size > 1 else self.prob_sum
        self.epochs_seen = 0

    @torch.no_grad()
    def record(self, epoch: int, ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
               loss: torch.Tensor) -> None:
        """ids (B,), logits (B, K), labels (B,), per-sample loss (B,) from the same forward pass."""
        logits = logits.float()
        self.loss[epoch, ids] = loss.float()
        self.margin[epoch, ids] = logit_margin(logits, labels)
        probs = torch.softmax(logits, dim=1)
        self._probs.index_add_(0, ids, probs)

    @torch.no_grad()
    def record_limit(self, epoch: int, ids: torch.Tensor, distance: torch.Tensor) -> None:
        """ids (B,), LIMIT distance (B,) from the same batch's training pass."""
        self.limit[epoch, ids] = distance.float()

    def after_step(self, epoch: int, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None,
                   out: StepOutput) -> None:
        self.record(epoch, ids, out.logits.detach(), y, out.loss_i.detach())

    def end_epoch(self, epoch: int, mean_loss: float) -> None:
        rows = [t for t in (self.loss, self.margin, self.limit) if t is not None]
        seen = ~torch.isnan(self.loss[epoch])
        if self.world.size > 1:  # each rank holds its own samples' records: sum them by sample id
            stacked = torch.stack([torch.nan_to_num(t[epoch], nan=0.0) for t in rows] + [seen.float()])
            all_sum(stacked, self.world)
            for t, row in zip(rows, stacked[:-1]):
                t[epoch] = row
            counts = stacked[-1]
            all_sum(self._probs, self.world)
            self.prob_sum += self._probs
            self._probs.zero_()
        else:
            counts = seen.float()
        if not bool((counts == 1).all()):  # one host sync per epoch
            bad = int(torch.nonzero(counts != 1)[0, 0])
            raise TrainingError(f"epoch {epoch + 1}: sample {bad} was recorded {int(counts[bad])} times, not once; "
                                "this is a bug in labelaudit (rerun with LABELAUDIT_DEBUG=1 and report it)")
        self.epochs_seen += 1

    _TENSORS = ("loss", "margin", "prob_sum", "limit")

    def state(self) -> dict:
        """What a checkpoint keeps (checkpoint.py): every recorded tensor and the epoch count."""
        return {"epochs_seen": self.epochs_seen, **{name: getattr(self, name) for name in self._TENSORS}}

    def load_state(self, state: dict) -> None:
        for name in self._TENSORS:
            mine, saved = getattr(self, name), state.get(name)
            if (mine is None) != (saved is None) or (mine is not None and mine.shape != saved.shape):
                raise DataError(f"checkpoint: recorded {name!r} does not match this run; "
                                "delete checkpoint.pt and scan again without --resume")
            if mine is not None:
                mine.copy_(saved)
        self.epochs_seen = int(state["epochs_seen"])

    def dynamics(self) -> Dynamics:
        e = self.epochs_seen
        return Dynamics(loss=self.loss[:e].cpu().numpy(), margin=self.margin[:e].cpu().numpy(),
                        mean_probs=(self.prob_sum / max(e, 1)).cpu().numpy(),
                        limit_epochs=None if self.limit is None else self.limit[:e].cpu().numpy(),
                        limit_distance=None if self.limit_final is None else self.limit_final.cpu().numpy())
