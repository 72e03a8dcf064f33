"""The second run's parts that plug into the one training loop (training/loop.py ``Hook``): label
correction's targets, the schedule and the momentum model, the per-epoch history with held-out
accuracy, and the meta step's per-sample records. Each keeps its state in the run's checkpoint."""
from __future__ import annotations

import torch

from ..training.loop import Hook, batched_logits
from .config import TrainConfig
from .inputs import TrainInputs
from .losses import ema_decay, ema_update, lc_targets
from .meta import MetaLog, WeightAverage


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose argmax is the label. (N, K), (N,) → float."""
    return float((logits.argmax(dim=1) == labels).float().mean())


class LabelCorrection(Hook):
    """The epoch's targets ``now`` (N, K): one-hot given labels, and from epoch ``label_correction`` on
    SLN-MO-LC's ω·y + (1 − ω)·S from the kept (momentum) model's predictions (SLN Sec. 3.3)."""

    def __init__(self, inputs: TrainInputs, config: TrainConfig, kept: torch.nn.Module, autocast):
        self.inputs, self.config, self.kept, self.autocast = inputs, config, kept, autocast
        self.onehot = torch.nn.functional.one_hot(inputs.labels, len(inputs.ds.classes)).float()  # (N, K)
        self.now = self.onehot

    def before_epoch(self, epoch: int) -> None:
        start = self.config.label_correction
        if start and epoch + 1 >= start:
            logits = batched_logits(self.kept, self.inputs.images, self.inputs.normalise, self.config.batch_size,
                                    self.autocast)  # (N, K), eval mode, un-augmented
            loss = torch.nn.functional.cross_entropy(logits, self.inputs.labels, reduction="none")  # (N,)
            self.now = lc_targets(self.inputs.labels, torch.softmax(logits, dim=1), loss,
                                  weighting=self.config.lc_weighting)
        else:
            self.now = self.onehot


class EmaAndSchedule(Hook):
    """After every step: the one-cycle schedule, then the momentum model (SLN-MO, Sec. 4.1)."""

    def __init__(self, model: torch.nn.Module, ema: torch.nn.Module | None, sched, alpha: float):
        self.model, self.ema, self.sched, self.alpha = model, ema, sched, alpha
        self.steps = 0

    def after_step(self, epoch, ids, x, y, out) -> None:
        self.sched.step()
        self.steps += 1
        if self.ema is not None:
            ema_update(self.ema, self.model, ema_decay(self.alpha, self.steps - 1))

    def state(self) -> dict:
        return {"steps": self.steps, "sched": self.sched.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict()}

    def load_state(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.sched.load_state_dict(state["sched"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


class History(Hook):
    """metrics.json's per-epoch rows: loss, learning rate, the meta step's epoch means, and held-out
    accuracy of the kept model (and of the raw one beside a momentum model)."""

    def __init__(self, inputs: TrainInputs, config: TrainConfig, model, kept, sched, meta_log: MetaLog | None,
                 autocast):
        self.inputs, self.config, self.model, self.kept = inputs, config, model, kept
        self.sched, self.meta_log, self.autocast = sched, meta_log, autocast
        self.rows: list[dict] = []

    def _accuracy_of(self, net) -> float:
        logits = batched_logits(net, self.inputs.eval_images, self.inputs.normalise, self.config.batch_size,
                                self.autocast)
        return _accuracy(logits, self.inputs.eval_labels)

    def end_epoch(self, epoch: int, mean_loss: float) -> dict:
        row = {"epoch": epoch + 1, "train_loss": mean_loss, "lr": float(self.sched.get_last_lr()[0]),
               **(self.meta_log.epoch() if self.meta_log is not None else {})}
        if self.inputs.eval_images is not None:
            row["eval_accuracy"] = self._accuracy_of(self.kept)
            if self.kept is not self.model:
                row["eval_accuracy_raw"] = self._accuracy_of(self.model)
        self.rows.append(row)
        return {"accuracy": row["eval_accuracy"]} if "eval_accuracy" in row else {}

    def state(self) -> dict:
        return {"rows": self.rows}

    def load_state(self, state: dict) -> None:
        self.rows = list(state["rows"])


class MetaState(Hook):
    """Checkpoints the meta step's per-sample records and weight averages (no work of its own)."""

    def __init__(self, log: MetaLog | None, average: WeightAverage | None):
        self.log, self.average = log, average

    def state(self) -> dict:
        return {"log": None if self.log is None else self.log.state(),
                "average": None if self.average is None else self.average.state()}

    def load_state(self, state: dict) -> None:
        if self.log is not None:
            self.log.load_state(state["log"])
        if self.average is not None:
            self.average.load_state(state["average"])
