"""``labelaudit train``: the second, noise-robust training run, using what the audit found.

sources → decode/cache (the scan's stages) → align with the audit → train with the chosen methods
through the one training loop (training/loop.py) → evaluate on a held-out set every epoch →
MODEL_DIR/{model.pt, model.json, metrics.json}. A checkpoint in MODEL_DIR after every epoch lets
``--resume`` continue an interrupted run; a finished run deletes it.

Methods, combinable: per-sample weights from the audit (AUL Sec. 4.2), dropping or relabelling the
flagged samples, forward or backward loss correction with the audit's T (Patrini Sec. 4.1–4.2),
stochastic label noise, a momentum (EMA) model and label correction (SLN Sec. 3.3, 4.1), IEG's meta
step with a trusted set. Every method is one per-sample loss, Σⱼ tⱼ ℓⱼ (target t, per-label losses
ℓ), weighted per batch: the step function below; the rest plugs into the loop as hooks (hooks.py).

model.pt is a plain state_dict (tensors only): ``torch.load(path, weights_only=True)`` reads it; no
pickled objects anywhere. model.json holds the class names and the preprocessing.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._version import __version__
from ..atomic import replace_folder, write_atomic
from ..audit.write import write_json, write_parquet
from ..errors import UsageError
from ..progress import Progress
from ..training.backbones import torchvision_architecture
from ..training.checkpoint import CHECKPOINT_FILE, Checkpointer
from ..training.embeddings import linear_head, with_frozen_head
from ..training.distributed import barrier, current, join, launched, parallel
from ..training.loop import (Batches, StepOutput, device_model, precision_for, seeded_generators, steps_per_epoch,
                             train_epochs)
from ..config import with_options
from .config import TrainConfig
from .hooks import EmaAndSchedule, History, LabelCorrection, MetaState
from .inputs import TrainInputs, prepare
from .losses import sln_targets, soft_ce, weighted_mean
from .meta import MetaLog, WeightAverage, meta_loss

MODEL_FILE, MODEL_JSON, METRICS_JSON = "model.pt", "model.json", "metrics.json"
META_WEIGHTS = "meta_weights.parquet"  # with a meta method: what the meta step made of each sample (meta.MetaLog)


@dataclass
class TrainResult:
    """What a training run produced: metrics.json as a dict, model.json as a dict, and the folder."""

    metrics: dict
    model_info: dict
    out: Path | None = None
    meta_weights: pd.DataFrame | None = None  # meta_weights.parquet's table, with a meta method

    @property
    def final_accuracy(self) -> float | None:
        return self.metrics["final"].get("eval_accuracy")


def train(data: str | Path | None = None, *, audit: str | Path | None = None, out: str | Path | None = "labelaudit-model",
          eval_data: str | Path | None = None, manifest: str | Path | None = None, root: str | Path | None = None,
          eval_manifest: str | Path | None = None, eval_root: str | Path | None = None,
          trusted: str | Path | None = None, trusted_root: str | Path | None = None,
          config: TrainConfig | None = None, progress: Progress | None = None, **options) -> TrainResult:
    """Train a fresh model on ``data`` with the audit's help, evaluate it on ``eval_data`` every epoch,
    and (unless ``out`` is None) write MODEL_DIR.

    data, manifest, root : the training data, as in :func:`labelaudit.scan`.
    audit : the audit folder of a scan of the same data (needed by weights, drop, relabel, correction).
    eval_data / eval_manifest, eval_root : held-out data with clean labels (folder or manifest).
    trusted, trusted_root : a manifest of hand-verified ``path,label`` rows (data/trusted.py), needed by
        meta_reweight and meta_relabel: the probe set of IEG's meta step (meta.py).
    config, **options : a :class:`TrainConfig` and single-field overrides.

    Raises UsageError for bad arguments, DataError for unusable data, TrainingError on divergence,
    DeviceMemoryError when the device runs out of memory.
    """
    config = with_options(TrainConfig, config, options, "train")
    if launched() and config.needs_trusted:
        raise UsageError("--meta-reweight/--meta-relabel run in one process: start them without torchrun "
                         "(the other methods run under torchrun)")
    world = join(config.device)  # several processes under torchrun: one process group (training/distributed.py)
    if config.resume and out is None:
        raise UsageError("--resume needs an output folder: the checkpoint lives there")
    t = time.perf_counter()
    inputs = prepare(data, config, audit=audit, manifest=manifest, root=root, eval_data=eval_data,
                     eval_manifest=eval_manifest, eval_root=eval_root, trusted=trusted, trusted_root=trusted_root,
                     progress=progress)
    timings = {"load_s": time.perf_counter() - t}
    t = time.perf_counter()
    checkpoint = None if out is None else Checkpointer(Path(out) / CHECKPOINT_FILE, inputs.checkpoint_key(config),
                                                       resume=config.resume, command="train")
    kept, history, meta_log, resumed = _fit(inputs, config, checkpoint, progress)
    timings["train_s"] = time.perf_counter() - t
    result = _result(inputs, config, kept, history, meta_log, timings, resumed)
    result.metrics["distributed"] = world.as_dict()
    if inputs.frozen_net is not None:  # the whole network: the backbone with the trained head folded in
        kept = with_frozen_head(inputs.frozen_net, kept, inputs.normalise)
    if out is not None and world.main:  # every rank holds the same model; rank 0 writes it
        _write(Path(out), kept, result)
    barrier(world)
    return result


def _fit(inputs: TrainInputs, config: TrainConfig, checkpoint: Checkpointer | None, progress: Progress | None):
    """The training run: the model, its optimiser and schedule, the step function of the chosen
    methods, and the hooks; returns (the model kept, the per-epoch history, the meta log, the epoch
    resumed from)."""
    device, n, k = inputs.device, inputs.n, len(inputs.ds.classes)
    torch.manual_seed(config.seed)
    if inputs.frozen_net is not None:  # --freeze: a linear head on the backbone's embeddings
        model = linear_head(inputs.images.shape[1], k, device)
    else:
        model = device_model(config.model, k, device, inputs.pretrained)
    ema = copy.deepcopy(model) if config.ema else None
    kept = ema if ema is not None else model  # the model evaluated, reported and saved
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                          weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, pct_start=0.15, anneal_strategy="cos",
                                                total_steps=config.epochs * steps_per_epoch(n, config.batch_size))
    gen, order_gen = seeded_generators(config.seed, device)
    precision = precision_for(device)
    batches = Batches(inputs.images, config.batch_size, inputs.augment, inputs.normalise, gen, order_gen, device)
    meta_log = MetaLog(n, device=device) if config.needs_trusted else None
    average = WeightAverage(n, config.meta_average, device=device) if config.meta_average else None
    targets = LabelCorrection(inputs, config, kept, precision.autocast)
    net = parallel(model, current())  # the training forward: DDP under torchrun

    def step(x: torch.Tensor, ids: torch.Tensor, raw: torch.Tensor) -> StepOutput:
        target = targets.now[ids]  # (B, K)
        if config.sln:
            target = sln_targets(target, config.sln, gen)
        if config.needs_trusted:  # IEG / L2R: coefficients from a virtual step and the trusted batch
            loss, coef = meta_loss(model, x, target, raw, inputs.augment, gen, inputs.probe_images,
                                   inputs.probe_labels, inputs.normalise, config, lr=float(sched.get_last_lr()[0]),
                                   prior=inputs.weights[ids] if config.weights else None, average=average, ids=ids,
                                   sgd=opt)
            meta_log(ids, coef)
            return StepOutput(loss)
        with precision.autocast:
            logits = net(x)  # (B, K)
        return StepOutput(weighted_mean(soft_ce(logits, target, config.correction, inputs.matrix),
                                        inputs.weights[ids]))

    history = History(inputs, config, model, kept, sched, meta_log, precision.autocast)
    hooks = [targets, EmaAndSchedule(model, ema, sched, config.ema), history, MetaState(meta_log, average)]
    run = train_epochs(model, opt, batches, step, epochs=config.epochs, labels=inputs.labels, hooks=hooks,
                       precision=precision, checkpoint=checkpoint, progress=progress, stage="fit",
                       diverged=f"lower --lr (now {config.lr})" + (" or --sln" if config.sln else "")
                                + " and train again")
    return kept, history.rows, meta_log, run["start"]


def _result(inputs: TrainInputs, config: TrainConfig, kept, history: list[dict], meta_log: MetaLog | None,
            timings: dict, resumed: int) -> TrainResult:
    """metrics.json, model.json and the meta step's per-sample table."""
    ds, k = inputs.ds, len(inputs.ds.classes)
    accs = [r["eval_accuracy"] for r in history if "eval_accuracy" in r]
    final, best = {"train_loss": history[-1]["train_loss"]}, {}
    if accs:
        final["eval_accuracy"] = accs[-1]
        b = int(np.argmax(accs))
        best = {"eval_accuracy": accs[b], "epoch": history[b]["epoch"]}
    metrics = {
        "labelaudit_version": __version__,
        "methods": config.methods(),
        "config": {**dataclasses.asdict(config), "image_size": inputs.image_size, "augment": inputs.augment},
        "device": str(inputs.device),
        "audit": inputs.audit_path,
        "data": {"n_samples": len(ds.samples), "n_trained": inputs.n, "n_errors": int(len(ds.errors)),
                 "n_eval": int(len(inputs.eval_ds.samples)) if inputs.eval_ds is not None else 0, **inputs.changes},
        "transition": inputs.t_info or None,
        "trusted": None if inputs.trust is None else {
            "file": str(Path(inputs.trust.source).resolve()), "n": int(len(inputs.trust.labels)),
            "per_class_min": int(inputs.trust.counts(k).min()), "n_in_data": int(inputs.trust.inside.sum())},
        "model_evaluated": "momentum (EMA) model" if config.ema else "model",
        "resumed_from_epoch": resumed,
        "epochs": history, "final": final, "best": best, "timings": timings,
    }
    meta_table = None
    if meta_log is not None:  # per trained sample: what the meta step made of it (meta.MetaLog)
        meta_table = ds.samples.iloc[inputs.keep][["path", "given_label"]].reset_index(drop=True)
        meta_table["trained_label"] = np.asarray(ds.classes, dtype=object)[inputs.train_labels]  # after --relabel
        for name, column in meta_log.per_sample(config.meta_relabel).items():
            meta_table[name] = column
        last = history[-1]
        metrics["meta"] = {"file": META_WEIGHTS, "last_epoch_ess": last["meta_ess"],
                           "last_epoch_zero_share": last["meta_zero_share"],
                           "never_kept": float((meta_table["meta_weight"] == 0).mean())}
    if inputs.backbone is not None:
        metrics["backbone"] = inputs.backbone
    model_info = {
        "labelaudit_version": __version__, "format": "state_dict", "file": MODEL_FILE,
        "model": config.model, "classes": ds.classes, "image_size": inputs.image_size,
        "architecture": "torchvision" if torchvision_architecture(config.model, inputs.pretrained) else "labelaudit",
        "mean": inputs.pixels.mean.flatten().tolist(), "std": inputs.pixels.std.flatten().tolist(),
        "preprocessing": "RGB, resized to image_size² (as scan decodes), (x − mean) / std per channel in 0..255 units",
    }
    if inputs.backbone is not None:
        model_info["pretrained"] = inputs.backbone["weights"]
        model_info["frozen"] = bool(config.freeze)
    return TrainResult(metrics, model_info, meta_weights=meta_table)


def _write(out: Path, kept, result: TrainResult) -> None:
    """MODEL_DIR, old or new, never a mix; an earlier run's meta_weights.parquet and this run's
    checkpoint never outlive it."""
    state = {name: tensor.detach().cpu() for name, tensor in kept.state_dict().items()}
    meta = result.meta_weights
    names = (MODEL_FILE, MODEL_JSON) + ((META_WEIGHTS,) if meta is not None else ()) + (METRICS_JSON,)
    with replace_folder(out, replaces=names, drop=(META_WEIGHTS, CHECKPOINT_FILE)) as stage:
        write_atomic(stage / MODEL_FILE, lambda tmp: torch.save(state, tmp))
        write_json(result.model_info, stage / MODEL_JSON)
        if meta is not None:
            write_parquet(meta, stage / META_WEIGHTS)
        write_json(result.metrics, stage / METRICS_JSON)  # last: marks a complete run
    result.out = out
