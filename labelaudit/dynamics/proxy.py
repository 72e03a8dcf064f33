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
it agrees with more given labels than are correct (the noise model's count, or the last epochs'
steady confident joint), further epochs only teach it the wrong labels and blur the scores. Measured
in benchmarks/epochs.py: the digits sets stop at 15 or 16, where their AUROC is at its best, the
CIFAR-10 sets run 30 epochs and gain 0.005–0.05 AUROC.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import Progress, as_stage
from ..training.backbones import Pretrained, resolve_weights
from ..training.checkpoint import Checkpointer
from ..training.distributed import current, from_main, parallel
from ..training.loop import (Batches, Hook, Normalise, StepOutput, compiled, device_model, precision_for,
                             seeded_generators, steps_per_epoch, train_epochs)
from .limit import LimitPair, LimitSettings
from .pseudo import augmented_pseudo_labels
from .recorders import Dynamics, Recorder


# (margins (e, N), given (N,), losses (e, N), the class predicted so far (N,)) → {"memorising": bool, ...}
StopRule = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], dict]
AUTO_EPOCHS = (15, 30)  # --epochs auto: the fewest and the most epochs (benchmarks/epochs.py)


@dataclass(frozen=True)
class ProxySettings:
    model: str = "small"  # network name: models.MODELS or a torchvision model (training/backbones.py)
    weights: str | None = None  # what the network starts from (backbones.resolve_weights); None: from scratch
    epochs: int = AUTO_EPOCHS[1]  # passes over the data (the most, with stop_from); AUL integrates the loss over them
    stop_from: int | None = AUTO_EPOCHS[0]  # from this epoch on, stop at the onset of memorisation; None = all epochs
    batch_size: int = 128  # samples per step
    lr: float = 0.05  # SGD learning rate, constant (no schedule: AUL is read before any drop)
    momentum: float = 0.9  # SGD Nesterov momentum
    weight_decay: float = 5e-4  # L2 on all weights
    augment: str = "crop+flip"  # crop+flip | crop | none (augment.py)
    seed: int = 0  # model init, data order and augmentation
    compile: bool = False  # torch.compile the network for the training loop (loop.compiled)
    frozen: bool = False  # --freeze: a linear head on the frozen backbone's embeddings (training/embeddings.py)


def train_proxy(images: torch.Tensor, labels: torch.Tensor, num_classes: int, settings: ProxySettings,
                *, device: torch.device, progress: Progress | None = None, limit: LimitSettings | None = None,
                checkpoint: Checkpointer | None = None, pseudo_k: int = 0, stop_rule: StopRule | None = None,
                hooks: Sequence[Hook] = (), pretrained: Pretrained | None = None,
                network: Callable[[], torch.nn.Module] | None = None, normalise: Callable | None = None) -> Dynamics:
    """Train the proxy on ``images`` (N, 3, S, S) uint8 and ``labels`` (N,) int64, both on ``device``,
    through the one training loop (training/loop.py), recording every sample's loss and margin.

    With ``limit``, the LIMIT pair (limit.py) trains on the same augmented batches, and the dynamics
    carry its distances. With ``checkpoint``, the whole state is saved after every epoch, and a saved
    state is resumed from when ``checkpoint.resume``. With ``pseudo_k``, the trained proxy's pseudo
    labels by IEG Eq. 3 (pseudo.py) are added. With ``settings.stop_from``, ``stop_rule(margins so far
    (e, N), given labels (N,), losses so far (e, N), the class predicted so far (N,))`` is asked before every epoch from then on and ends training when its
    answer's ``"memorising"`` is true (noise/stopping.py's ``memorisation_check``; ``Dynamics.stopped``
    holds the answer). ``hooks``: more of the loop's hooks, after the recorders (benchmarks read the
    run through them). ``pretrained``: ``settings.weights`` as read (backbones.resolve_weights; read
    here when None), whose mean and std, when it has them, normalise the images. ``network`` (a
    function that builds the network, called under the run's seed) and ``normalise`` replace the
    network built from the settings and the images' normalisation: with ``--freeze`` the "images" are
    a backbone's embeddings (N, D) and the network a head on them (training/embeddings.py). Returns the recorded dynamics. Raises TrainingError when the loss stops being
    finite, DeviceMemoryError when the device runs out of memory.
    """
    n = images.shape[0]
    if settings.stop_from is not None and settings.stop_from < settings.epochs and stop_rule is None:
        raise ValueError(f"stop_from={settings.stop_from} needs a stop_rule (labelaudit.noise.stopping."
                         "memorisation_check), or stop_from=None for exactly settings.epochs epochs")
    torch.manual_seed(settings.seed)
    world = current()
    precision = precision_for(device)
    if network is not None:
        model = network()
    else:
        if pretrained is None:
            pretrained = resolve_weights(settings.model, settings.weights)
        model = device_model(settings.model, num_classes, device, pretrained)
    pair = None if limit is None else LimitPair(limit.model, num_classes, limit, device=device,
                                                steps_per_epoch=steps_per_epoch(n, settings.batch_size),
                                                fp16=precision.scaler is not None, world=world)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                          nesterov=True, weight_decay=settings.weight_decay)
    if normalise is None:
        normalise = Normalise.for_network(images, pretrained, device)
    gen, order_gen = seeded_generators(settings.seed, device)
    rec = Recorder(n, num_classes, settings.epochs, device, limit=pair is not None, world=world)
    # the training forward (DDP under torchrun, compiled with --compile); `model` holds the parameters
    net = compiled(parallel(model, world), settings.compile)

    def step(x: torch.Tensor, ids: torch.Tensor, raw: torch.Tensor) -> StepOutput:
        with precision.autocast:
            logits = net(x)  # (B, K)
        loss_i = F.cross_entropy(logits.float(), labels[ids], reduction="none")  # (B,)
        return StepOutput(loss_i.mean(), logits, loss_i)

    own = [rec] + ([_LimitHook(pair, rec, precision.autocast)] if pair is not None else [])
    if settings.stop_from is not None and stop_rule is not None:
        own.append(_StopHook(settings.stop_from, rec, labels.cpu().numpy(), stop_rule))
    run = train_epochs(model, opt, Batches(images, settings.batch_size, settings.augment, normalise, gen, order_gen,
                                           device),
                       step, epochs=settings.epochs, labels=labels, hooks=[*own, *hooks], precision=precision,
                       checkpoint=checkpoint, progress=progress, stage="train",
                       diverged=f"the learning rate is probably too high: lower --lr (now {settings.lr:g}) and "
                                "scan again")
    # what is computed after training comes from rank 0 (the ranks' BatchNorm statistics differ a little)
    if pair is not None:  # LIMIT's score: q in eval mode on un-augmented images (Sec. 4.1)
        rec.limit_final = from_main(pair.distance(images, labels, normalise, settings.batch_size, precision.autocast),
                                    world)
    dyn = rec.dynamics()
    dyn.resumed_from_epoch = run["start"]
    dyn.stopped = run["stopped"]
    if pseudo_k:
        dyn.pseudo_probs = from_main(augmented_pseudo_labels(model, images, normalise, settings.augment, pseudo_k, gen,
                                                             settings.batch_size, precision.autocast),
                                     world).cpu().numpy()
    return dyn


HELD_OUT_FOLDS = 5  # the rate's held-out heads (--weights): each trained without the fifth it predicts


def held_out_probs(features: torch.Tensor, labels: torch.Tensor, num_classes: int, settings: ProxySettings, *,
                   device: torch.device, network: Callable[[], torch.nn.Module], normalise: Callable,
                   folds: int = HELD_OUT_FOLDS, stop_rule: StopRule | None = None,
                   progress: Progress | None = None) -> np.ndarray:
    """With a pretrained backbone: every sample's probabilities from a head that never saw its label, (N, K).

    The samples are dealt into ``folds`` folds by a permutation drawn from ``settings.seed``; for each
    fold a fresh head trains on the others with the same settings as the audit's own head, and the
    fold's softmax, taken after every epoch, is averaged over the epochs as the recorded one is
    (``Dynamics.mean_probs``). These are the out-of-sample probabilities the confident joint asks for
    (noise/confident.py): a head can fit the wrong labels it trains on, most where the samples are
    few for the embedding's size. A fold with no samples (N < folds) is skipped.
    """
    n = features.shape[0]
    fold = np.random.default_rng(settings.seed).permutation(n) % folds
    out = np.zeros((n, num_classes), dtype=np.float32)  # as Dynamics.mean_probs: 4.8 GB at 1.2M × 1,000, not 9.6
    for f in range(folds):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        if len(test) == 0 or len(train) == 0:
            continue
        take, keep = torch.from_numpy(test).to(features.device), torch.from_numpy(train).to(features.device)
        held = _HeldOutHook(features[take], normalise)
        train_proxy(features[keep], labels[keep.to(labels.device)], num_classes, settings, device=device,
                    stop_rule=stop_rule, hooks=[held], network=network, normalise=normalise,
                    progress=as_stage(progress, f"held-out head {f + 1}/{folds}"))
        out[test] = held.mean()
    return out


class _HeldOutHook(Hook):
    """After every epoch, the network's softmax on samples it does not train on, summed over epochs."""

    def __init__(self, features: torch.Tensor, normalise: Callable):
        self.features, self.normalise = features, normalise
        self.total, self.epochs = None, 0

    def start(self, model: torch.nn.Module, batches: Batches) -> None:
        self.model = model

    @torch.no_grad()
    def end_epoch(self, epoch: int, mean_loss: float) -> None:
        was = self.model.training
        self.model.eval()
        probs = np.concatenate([torch.softmax(self.model(self.normalise(chunk)).float(), dim=1).cpu().numpy()
                                for chunk in self.features.split(8192)])
        self.model.train(was)
        self.total = probs if self.total is None else self.total + probs  # float32, as the softmax
        self.epochs += 1

    def mean(self) -> np.ndarray:
        """(n, K) float32, as the recorder's mean probabilities (the confident joint reads them in float64 chunks)."""
        return self.total / np.float32(max(self.epochs, 1))


class _LimitHook(Hook):
    """The LIMIT pair's own forward and backward passes on each step's batch, its distances recorded."""

    def __init__(self, pair: LimitPair, rec: Recorder, autocast):
        self.pair, self.rec, self.autocast = pair, rec, autocast

    def after_step(self, epoch, ids, x, y, out) -> None:
        self.rec.record_limit(epoch, ids, self.pair.step(x, y, self.autocast, out.weight))

    def state(self) -> dict:
        return self.pair.state_dict()

    def load_state(self, state: dict) -> None:
        self.pair.load_state_dict(state)


class _StopHook(Hook):
    """``--epochs auto``: from epoch ``stop_from`` on, the stopping rule reads the margins and losses so
    far and the class the run predicts so far (its summed probabilities' argmax)."""

    def __init__(self, stop_from: int, rec: Recorder, given: np.ndarray, rule: StopRule):
        self.stop_from, self.rec, self.given, self.rule = stop_from, rec, given, rule

    def before_epoch(self, epoch: int) -> dict | None:
        if epoch < self.stop_from:
            return None
        rec = self.rec
        check = self.rule(rec.margin[:epoch].cpu().numpy(), self.given, rec.loss[:epoch].cpu().numpy(),
                          rec.prob_sum.argmax(dim=1).cpu().numpy())
        return check if check["memorising"] else None
