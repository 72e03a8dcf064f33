"""``labelaudit train``: the second, noise-robust training run, using what the audit found.

sources → decode/cache (the scan's stages) → align with the audit → train with the chosen methods
(losses.py) → evaluate on a held-out set every epoch → MODEL_DIR/{model.pt, model.json, metrics.json}.

Methods, combinable: per-sample weights from the audit (AUL Sec. 4.2), dropping or relabelling the
flagged samples, forward or backward loss correction with the audit's T (Patrini Sec. 4.1–4.2),
stochastic label noise, a momentum (EMA) model and label correction (SLN Sec. 3.3, 4.1). Every method
is one per-sample loss, Σⱼ tⱼ ℓⱼ (target t, per-label losses ℓ), weighted per batch.

model.pt is a plain state_dict (tensors only): ``torch.load(path, weights_only=True)`` reads it; no
pickled objects anywhere. model.json holds the class names and the preprocessing.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from ..atomic import replace_folder, write_atomic
from ..data.cache import cache_dir_for
from ..errors import TrainingError, UsageError
from .config import TrainConfig
from .data import correction_matrix, load_data, training_set
from .losses import ema_decay, ema_update, lc_targets, sln_targets, soft_ce, weighted_mean
from .meta import meta_loss
from ..audit.write import write_json, write_parquet
from ..progress import Progress

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


# --------------------------------------------------------------------------------------------- data


# ---------------------------------------------------------------------------------------- training


def _accuracy(logits, labels) -> float:
    """Share of rows whose argmax is the label. (N, K), (N,) → float."""
    return float((logits.argmax(dim=1) == labels).float().mean())


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
    trusted, trusted_root : a manifest of hand-verified ``path,label`` rows (trusted.py), needed by
        meta_reweight and meta_relabel: the probe set of IEG's meta step (meta.py).
    config, **options : a :class:`TrainConfig` and single-field overrides.

    Raises UsageError for bad arguments, DataError for unusable data, TrainingError on divergence.
    """
    import torch

    from ..audit.read import load_audit
    from ..training.augment import augment_batch
    from ..training.device import resolve_device
    from ..training.loop import (Normalise, autocast_for, batched_logits, device_images, device_labels, device_model,
        epoch_batches, seeded_generators, steps_per_epoch)

    config = config or TrainConfig()
    unknown = set(options) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise UsageError(f"unknown train option(s): {', '.join(sorted(unknown))}")
    config = dataclasses.replace(config, **options).validate()
    if config.needs_trusted and trusted is None:
        raise UsageError("--meta-reweight/--meta-relabel need a trusted set: pass --trusted FILE (path,label rows "
                         "whose labels were verified by hand)")
    if config.needs_audit and audit is None:
        raise UsageError(f"{', '.join(config.methods())} need(s) an audit: pass --audit AUDIT_DIR (the --out of "
                         "`labelaudit scan` on this data)")
    aud = load_audit(audit) if audit is not None else None
    scan_config = aud.run.get("config", {}) if aud is not None else {}
    image_size = config.image_size or int(scan_config.get("image_size", 32))
    augment = config.augment or scan_config.get("augment", "crop+flip")
    device = resolve_device(config.device)
    timings: dict[str, float] = {}

    # --- data: training set (with the audit's changes) and the held-out set
    t = time.perf_counter()
    ds = load_data(data, manifest, root, config, image_size, progress)
    keep, train_labels, train_weights, changes = training_set(ds, aud, config)
    t_matrix, t_info = correction_matrix(aud, ds.classes, config) if aud is not None else (None, {})
    eval_ds = None
    if eval_data is not None or eval_manifest is not None:
        eval_ds = load_data(eval_data, eval_manifest, eval_root, config, image_size, None)
        unknown_classes = sorted(set(eval_ds.classes) - set(ds.classes))
        if unknown_classes:
            raise UsageError(f"--eval: label(s) {', '.join(unknown_classes[:5])} are not classes of the training "
                             f"data ({', '.join(ds.classes[:8])}…); the held-out set must use the same classes")
    trust = None
    if trusted is not None:
        from ..data.trusted import load_trusted

        trust = load_trusted(trusted, classes=ds.classes, data_files=ds.files, data_labels=ds.labels,
                             image_size=image_size, workers=config.decode_workers,
                             cache_dir=cache_dir_for(config.cache, config.cache_dir), root=trusted_root,
                             allow_outside_root=config.allow_outside_root)
        if config.needs_trusted:
            trust.require_every_class(ds.classes, "--meta-reweight" if not config.meta_relabel else "--meta-relabel")
    timings["load_s"] = time.perf_counter() - t

    # --- tensors on the device; uint8 images, augmented and normalised per batch
    images = device_images(ds.images[keep], device)  # (N, 3, S, S) uint8
    labels = device_labels(train_labels, device)
    weights = torch.from_numpy(train_weights).to(device)
    normalise = Normalise.of(images)
    matrix = None if t_matrix is None else torch.from_numpy(t_matrix).to(device)
    if eval_ds is not None:
        eval_images = device_images(eval_ds.images, device)
        eval_labels = device_labels(eval_ds.samples["given_label"].map({c: k for k, c in enumerate(ds.classes)}),
                                    device)

    if trust is not None:
        probe_images = device_images(trust.images, device)  # (M, 3, S, S) uint8
        probe_labels = device_labels(trust.labels, device)

    n, k = images.shape[0], len(ds.classes)
    torch.manual_seed(config.seed)
    model = device_model(config.model, k, device)
    ema = copy.deepcopy(model) if config.ema else None
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                          weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch(n, config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.15,
                                                anneal_strategy="cos")
    gen, order_gen = seeded_generators(config.seed, device)
    autocast = autocast_for(device)

    def logits_of(net, imgs):  # eval mode, un-augmented
        return batched_logits(net, imgs, normalise, config.batch_size, autocast)

    onehot = torch.nn.functional.one_hot(labels, k).float()  # (N, K): the targets, unless corrected
    kept = ema if ema is not None else model  # the model evaluated, reported and saved

    history, done, t = [], 0, time.perf_counter()
    average = meta_log = None
    if config.needs_trusted:
        from .meta import MetaLog

        meta_log = MetaLog(n, device=device)
    if config.meta_average:
        from .meta import WeightAverage

        average = WeightAverage(n, config.meta_average, device=device)
    model.train()
    for epoch in range(1, config.epochs + 1):
        # --- SLN-MO-LC: targets from the (momentum) model's predictions, once per epoch (SLN Sec. 3.3)
        targets = onehot
        if config.label_correction and epoch >= config.label_correction:
            logits = logits_of(kept, images)  # (N, K)
            loss_all = torch.nn.functional.cross_entropy(logits, labels, reduction="none")  # (N,)
            targets = lc_targets(labels, torch.softmax(logits, dim=1), loss_all, weighting=config.lc_weighting)
        loss_sum = torch.zeros((), device=device)
        for ids in epoch_batches(n, config.batch_size, order_gen, device):
            x = normalise(augment_batch(images[ids], augment, gen))  # (B, 3, S, S)
            target = targets[ids]  # (B, K)
            if config.sln:
                target = sln_targets(target, config.sln, gen)
            if config.needs_trusted:  # IEG / L2R: coefficients from a virtual step and the trusted batch
                loss, coef = meta_loss(model, x, target, images[ids], augment, gen, probe_images, probe_labels,
                                        normalise, config, lr=float(sched.get_last_lr()[0]),
                                        prior=weights[ids] if config.weights else None, average=average, ids=ids,
                                        sgd=opt)
                meta_log(ids, coef)
            else:
                with autocast:
                    logits = model(x)  # (B, K)
                loss_i = soft_ce(logits, target, config.correction, matrix)  # (B,)
                loss = weighted_mean(loss_i, weights[ids])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if ema is not None:
                ema_update(ema, model, ema_decay(config.ema, done - 1))
            loss_sum += loss.detach() * len(ids)
            if progress is not None:
                progress("fit", done, total, {"epoch": epoch, "epochs": config.epochs})
        mean_loss = float(loss_sum) / n
        if not math.isfinite(mean_loss):
            raise TrainingError(f"training loss became {mean_loss} in epoch {epoch}; lower --lr (now {config.lr})"
                                + (" or --sln" if config.sln else "") + " and train again")
        row = {"epoch": epoch, "train_loss": mean_loss, "lr": float(sched.get_last_lr()[0]),
               **(meta_log.epoch() if meta_log is not None else {})}
        if eval_ds is not None:
            row["eval_accuracy"] = _accuracy(logits_of(kept, eval_images), eval_labels)
            if ema is not None:
                row["eval_accuracy_raw"] = _accuracy(logits_of(model, eval_images), eval_labels)
        history.append(row)
        if progress is not None:
            info = {"epoch": epoch, "epochs": config.epochs, "loss": mean_loss,
                    "images_per_s": epoch * n / max(time.perf_counter() - t, 1e-9)}
            if "eval_accuracy" in row:
                info["accuracy"] = row["eval_accuracy"]
            progress("fit", done, total, info)
    timings["train_s"] = time.perf_counter() - t

    # --- metrics and the model folder
    accs = [r["eval_accuracy"] for r in history if "eval_accuracy" in r]
    final = {"train_loss": history[-1]["train_loss"]}
    best = {}
    if accs:
        final["eval_accuracy"] = accs[-1]
        b = int(np.argmax(accs))
        best = {"eval_accuracy": accs[b], "epoch": history[b]["epoch"]}
    metrics = {
        "labelaudit_version": __version__,
        "methods": config.methods(),
        "config": {**dataclasses.asdict(config), "image_size": image_size, "augment": augment},
        "device": str(device),
        "audit": str(Path(audit).resolve()) if audit is not None else None,
        "data": {"n_samples": len(ds.samples), "n_trained": n, "n_errors": int(len(ds.errors)),
                 "n_eval": int(len(eval_ds.samples)) if eval_ds is not None else 0, **changes},
        "transition": t_info or None,
        "trusted": None if trust is None else {"file": str(Path(trusted).resolve()), "n": int(len(trust.labels)),
                                               "per_class_min": int(trust.counts(k).min()),
                                               "n_in_data": int(trust.inside.sum())},
        "model_evaluated": "momentum (EMA) model" if ema is not None else "model",
        "epochs": history, "final": final, "best": best, "timings": timings,
    }
    meta_table = None
    if meta_log is not None:  # per trained sample: what the meta step made of it (meta.MetaLog)
        meta_table = ds.samples.iloc[keep][["path", "given_label"]].reset_index(drop=True)
        meta_table["trained_label"] = np.asarray(ds.classes, dtype=object)[train_labels]  # after --relabel
        for name, column in meta_log.per_sample(config.meta_relabel).items():
            meta_table[name] = column
        last = history[-1]
        metrics["meta"] = {"file": META_WEIGHTS, "last_epoch_ess": last["meta_ess"],
                           "last_epoch_zero_share": last["meta_zero_share"],
                           "never_kept": float((meta_table["meta_weight"] == 0).mean())}
    model_info = {
        "labelaudit_version": __version__, "format": "state_dict", "file": MODEL_FILE,
        "model": config.model, "classes": ds.classes, "image_size": image_size,
        "mean": normalise.mean.flatten().tolist(), "std": normalise.std.flatten().tolist(),
        "preprocessing": "RGB, resized to image_size² (as scan decodes), (x − mean) / std per channel in 0..255 units",
    }
    result = TrainResult(metrics, model_info, meta_weights=meta_table)
    if out is not None:
        out = Path(out)
        state = {name: tensor.detach().cpu() for name, tensor in kept.state_dict().items()}
        names = (MODEL_FILE, MODEL_JSON) + ((META_WEIGHTS,) if meta_table is not None else ()) + (METRICS_JSON,)
        # old or new, never a mix; an earlier run's meta_weights.parquet never outlives it
        with replace_folder(out, replaces=names, drop=(META_WEIGHTS,)) as stage:
            write_atomic(stage / MODEL_FILE, lambda tmp: torch.save(state, tmp))
            write_json(model_info, stage / MODEL_JSON)
            if meta_table is not None:
                write_parquet(meta_table, stage / META_WEIGHTS)
            write_json(metrics, stage / METRICS_JSON)  # last: marks a complete run
        result.out = out
    return result


# ----------------------------------------------------------------------------------------- predict


