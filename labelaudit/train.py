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
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .atomic import replace_folder, write_atomic
from .cache import cache_dir_for
from .augment import AUGMENTS
from .errors import TrainingError, UsageError
from .export import DEFAULT_MIN_CONFIDENCE
from .losses import (CORRECTIONS, LC_WEIGHTINGS, condition_transition, ema_decay, ema_update, lc_targets,
                     sln_targets, soft_ce, weighted_mean)
from .models import MIN_IMAGE_SIZE, MODELS, build_model
from .outputs import write_json, write_parquet
from .progress import Progress

MODEL_FILE, MODEL_JSON, METRICS_JSON = "model.pt", "model.json", "metrics.json"
META_WEIGHTS = "meta_weights.parquet"  # with a meta method: what the meta step made of each sample (meta.MetaLog)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of ``labelaudit train``, with its default. The CLI's options map one to one."""

    # --- data (as in scan)
    image_size: int | None = None  # px; None = the audit's (32 without an audit)
    workers: int = 0  # decode processes; 0 = one per core, at most 8
    cache: bool = True  # reuse the scan's decoded-image cache
    cache_dir: str | None = None
    path_column: str = "path"
    label_column: str = "label"
    allow_outside_root: bool = False  # manifest: accept paths outside --root
    # --- model and schedule
    model: str = "small"  # small | medium | resnet18 | tiny (models.MODELS)
    epochs: int = 40  # longer than the proxy's 15: this model is the one you keep
    batch_size: int = 128
    lr: float = 0.1  # peak SGD learning rate of the one-cycle schedule (warm-up, then cosine to ~0)
    momentum: float = 0.9  # SGD Nesterov momentum
    weight_decay: float = 5e-4
    augment: str | None = None  # crop+flip | crop | none; None = the audit's (crop+flip without one)
    device: str = "auto"
    seed: int = 0
    # --- methods
    weights: bool = False  # weight each sample's loss by weights.parquet (1 − p_mislabeled), AUL Sec. 4.2
    drop_issues: bool = False  # leave out the samples the audit flagged (is_label_issue)
    relabel: bool = False  # train flagged samples on predicted_label when predicted_confidence ≥ min_confidence
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # the same default as `export --mode relabel`
    correction: str = "none"  # none | forward | backward, with the audit's transition.parquet (Patrini)
    max_condition: float = 100.0  # backward: T is mixed with I until cond(T) ≤ this (Patrini Sec. 4.1)
    sln: float = 0.0  # σ of the Gaussian noise on the one-hot target (SLN Eq. 3); 0 = off
    ema: float = 0.0  # momentum-model decay α (SLN-MO: 0.999); 0 = off. The momentum model is the one kept
    label_correction: int = 0  # SLN-MO-LC: from this epoch on (1-based), train on corrected targets; 0 = off
    lc_weighting: str = "paper"  # paper: ω·y + (1 − ω)·S, ω = normalised loss | reverse: ω ↔ 1 − ω
    # --- with a trusted set (train(..., trusted=FILE)), IEG / L2R
    meta_reweight: bool = False  # per-step weights from the trusted batch's loss after a virtual step (IEG Sec. 3)
    meta_relabel: bool = False  # per-step choice between given and pseudo label (IEG Eq. 5–8); implies the weights
    pseudo_k: int = 2  # augmentations averaged into a pseudo label (IEG Eq. 3; the paper's K = 2)
    probe_batch: int = 100  # trusted samples per meta step (all of them when fewer)
    meta_average: float = 0.0  # decay of each sample's average of ω* over its visits (meta.WeightAverage); 0 = off
    meta_momentum: bool = False  # the virtual step follows the optimiser's momentum and decay (IEG Sec. 4.3)
    meta_kl: float = 0.0  # k: weight of IEG's consistency loss between a batch and its strong view (Eq. 4); 0 = off
    meta_mixup: float = 0.0  # p: weight of L_uβ, IEG's mixup of probe, batch and strong view (Eq. 9); 0 = off

    def validate(self) -> "TrainConfig":
        checks = [
            (self.image_size is None or MIN_IMAGE_SIZE <= self.image_size <= 1024, "--image-size", self.image_size,
             f"a side length from {MIN_IMAGE_SIZE} to 1024 px"),
            (self.workers >= 0, "--workers", self.workers, "0 (auto) or a positive number"),
            (self.epochs >= 1, "--epochs", self.epochs, "at least 1"),
            (self.batch_size >= 2, "--batch-size", self.batch_size, "at least 2"),
            (self.lr > 0 and math.isfinite(self.lr), "--lr", self.lr, "a positive number"),
            (0.0 <= self.min_confidence <= 1.0, "--min-confidence", self.min_confidence, "a probability"),
            (self.max_condition > 1, "--max-condition", self.max_condition, "a number above 1"),
            (0.0 <= self.sln < 10, "--sln", self.sln, "a standard deviation from 0 (off) to 10 (the paper: 0.5–1)"),
            (self.ema == 0 or 0.0 < self.ema < 1.0, "--ema", self.ema, "0 (off) or a decay in (0, 1), e.g. 0.999"),
            (0.0 <= self.meta_average < 1.0, "--meta-average", self.meta_average,
             "0 (off) or a decay in (0, 1), e.g. 0.8"),
            (0.0 <= self.meta_kl <= 1000 and math.isfinite(self.meta_kl), "--meta-kl", self.meta_kl,
             "a loss weight from 0 (off) to 1000 (IEG on CIFAR: 20)"),
            (0.0 <= self.meta_mixup <= 1000 and math.isfinite(self.meta_mixup), "--meta-mixup", self.meta_mixup,
             "a loss weight from 0 (off) to 1000 (IEG on CIFAR: 5)"),
            (0 <= self.label_correction <= self.epochs, "--label-correction", self.label_correction,
             f"0 (off) or an epoch from 1 to --epochs ({self.epochs})"),
        ]
        for ok, option, value, expected in checks:
            if not ok:
                raise UsageError(f"{option} {value!r}: expected {expected}")
        for option, what, value, names in (("--model", "model", self.model, MODELS),
                                           ("--correction", "correction", self.correction, CORRECTIONS),
                                           ("--lc-weighting", "weighting", self.lc_weighting, LC_WEIGHTINGS)):
            if value not in names:
                raise UsageError(f"{option} {value!r}: unknown {what}; choose one of {', '.join(names)}")
        if self.augment is not None and self.augment not in AUGMENTS:
            raise UsageError(f"--augment {self.augment!r}: unknown; choose one of {', '.join(AUGMENTS)}")
        if self.pseudo_k < 1 or self.probe_batch < 1:
            raise UsageError(f"--pseudo-k {self.pseudo_k} / --probe-batch {self.probe_batch}: expected at least 1")
        for option, value in (("--meta-average", self.meta_average), ("--meta-momentum", self.meta_momentum),
                              ("--meta-kl", self.meta_kl), ("--meta-mixup", self.meta_mixup)):
            if value and not self.needs_trusted:
                raise UsageError(f"{option} is part of the meta step's training: add --meta-reweight or "
                                 "--meta-relabel (and --trusted FILE)")
        if self.drop_issues and self.relabel:
            raise UsageError("--drop-issues and --relabel both decide what happens to flagged samples; choose one")
        return self

    def methods(self) -> list[str]:
        """The methods in use, in words, for metrics.json and the summary."""
        out = []
        if self.weights:
            out.append("weights")
        if self.drop_issues:
            out.append("drop-issues")
        if self.relabel:
            out.append(f"relabel (confidence ≥ {self.min_confidence:g})")
        if self.correction != "none":
            out.append(f"{self.correction} correction")
        if self.sln:
            out.append(f"SLN σ={self.sln:g}")
        if self.ema:
            out.append(f"EMA α={self.ema:g}")
        if self.label_correction:
            out.append(f"label correction from epoch {self.label_correction} ({self.lc_weighting})")
        on = " of the audit-weighted losses" if self.weights else ""
        if self.meta_average:
            on += f", averaged per sample (decay {self.meta_average:g})"
        if self.meta_momentum:
            on += ", virtual step along the optimiser's momentum"
        if self.meta_relabel:
            out.append(f"meta re-labeling + re-weighting{on} (IEG, K={self.pseudo_k})")
        elif self.meta_reweight:
            out.append(f"meta re-weighting{on} (L2R/IEG)")
        if self.meta_kl:
            out.append(f"consistency loss k={self.meta_kl:g} (IEG Eq. 4)")
        if self.meta_mixup:
            out.append(f"probe mixup p={self.meta_mixup:g} (IEG Eq. 9)")
        return out or ["plain cross-entropy"]

    @property
    def decode_workers(self) -> int:
        """``workers``, with 0 resolved to one per core (at most 8), as scan does."""
        from .decode import default_workers

        return self.workers or default_workers()

    @property
    def needs_trusted(self) -> bool:
        return self.meta_reweight or self.meta_relabel

    @property
    def needs_audit(self) -> bool:
        return self.weights or self.drop_issues or self.relabel or self.correction != "none"


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

def _load(data, manifest, root, config: TrainConfig, image_size: int, progress: Progress | None):
    """Listing + decode through the scan's stages (same cache, same errors)."""
    from .dataset import load_dataset
    from .pipeline import ScanConfig, make_listing

    listing = make_listing(data, manifest, root, ScanConfig(path_column=config.path_column,
                                                            label_column=config.label_column,
                                                            allow_outside_root=config.allow_outside_root))
    return load_dataset(listing, image_size=image_size, workers=config.decode_workers,
                        cache_dir=cache_dir_for(config.cache, config.cache_dir), progress=progress)


def _align(audit, ds) -> np.ndarray:
    """Row of the audit's samples.parquet for each training sample (by path); UsageError when the
    audit does not cover the data or its classes differ."""
    audit_classes = [str(c) for c in audit.run["data"]["classes"]]
    if audit_classes != ds.classes:
        raise UsageError(f"--audit {audit.path}: its classes ({', '.join(audit_classes[:6])}…) differ from the "
                         f"data's ({', '.join(ds.classes[:6])}…); scan this data and pass that audit")
    index = pd.Series(np.arange(len(audit.samples)), index=audit.samples["path"].astype(str))
    if index.index.has_duplicates:
        index = index[~index.index.duplicated()]
    rows = index.reindex(ds.samples["path"].astype(str))
    missing = rows.isna()
    if missing.any():
        first = ds.samples["path"][missing.to_numpy()].iloc[0]
        raise UsageError(f"--audit {audit.path}: {int(missing.sum())} of {len(ds.samples)} samples are not in the "
                         f"audit (e.g. {first}); scan this data and pass that audit")
    return rows.to_numpy(dtype=np.int64)


def _training_set(ds, audit, config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(sample indices to train on, their labels, their weights, what the audit changed)."""
    n = len(ds.samples)
    keep, labels, weights = np.arange(n), ds.labels.copy(), np.ones(n, dtype=np.float32)
    changes = {"n_samples": n}
    if audit is None:
        return keep, labels, weights, changes
    rows = _align(audit, ds)
    samples = audit.samples.iloc[rows].reset_index(drop=True)
    flagged = samples["is_label_issue"].to_numpy(dtype=bool)
    if config.weights:
        weights = samples["weight"].to_numpy(dtype=np.float32)
        changes["mean_weight"] = float(weights.mean())
    if config.relabel:
        index = {c: k for k, c in enumerate(ds.classes)}
        predicted = samples["predicted_label"].astype(str).map(index).to_numpy()
        confident = flagged & (samples["predicted_confidence"].to_numpy() >= config.min_confidence)
        labels[confident] = predicted[confident]
        changes["n_relabelled"] = int(confident.sum())
    if config.drop_issues:
        keep = np.flatnonzero(~flagged)
        changes["n_dropped"] = int(flagged.sum())
        if len(keep) < 2:
            raise UsageError(f"--drop-issues: the audit flags {int(flagged.sum())} of {n} samples, leaving "
                             "too few to train on; use --weights instead")
    return keep, labels[keep], weights[keep], changes


def _transition(audit, classes: list[str], config: TrainConfig) -> tuple[np.ndarray | None, dict]:
    """The matrix the correction uses: T (forward) or T⁻¹ of T mixed with I as needed (backward)."""
    from .transition import transition_matrix

    if config.correction == "none":
        return None, {}
    if audit.transition is None:
        raise UsageError(f"--correction {config.correction}: {audit.path} has no transition.parquet; "
                         "scan again with this version of labelaudit")
    import torch

    t, t_classes = transition_matrix(audit.transition)
    if t_classes != classes:
        order = [t_classes.index(c) for c in classes]
        t = t[np.ix_(order, order)]
    tt = torch.tensor(t, dtype=torch.float64)
    info = {"condition_number": float(torch.linalg.cond(tt))}
    if config.correction == "backward":
        tt, lam = condition_transition(tt, config.max_condition)
        info.update(mixed_with_identity=lam, condition_number_used=float(torch.linalg.cond(tt)))
        if lam > 0:
            info["note"] = (f"T was ill-conditioned (condition number {info['condition_number']:.0f}); mixed "
                            f"{lam:.2f}·I + {1 - lam:.2f}·T before inverting (Patrini Sec. 4.1)")
        tt = torch.linalg.inv(tt)
    return tt.float().numpy(), info


# ---------------------------------------------------------------------------------------- training

def _meta_loss(model, x, target, raw, augment: str, gen, probe_images, probe_labels, normalise,
               config: TrainConfig, *, lr: float, prior=None, average=None, ids=None, sgd=None):
    """The step's loss with IEG's data coefficients (meta.py).

    meta_reweight: ``L_ω* = Σ ω*_i L(y_i, Φ(x_i))`` (IEG Eq. 1–2, L2R). meta_relabel: IEG Eq. 8,
    ``L_ω* + L_λ*`` with ``L_ω* = Σ ω*_i L(P(λ₀), Φ(x_i))`` and ``L_λ* = Σ (1/B) L(y*_i, Φ(x_i))``, y* the
    given label where λ* > 0 and the pseudo label g(x) (Eq. 3) otherwise (Eq. 7). The probe batch is a
    random draw of ``probe_batch`` trusted samples, augmented like the training batch. ``prior`` (B,): the
    audit's weights with ``--weights`` (meta re-weighting of the audit-weighted losses, meta.py), else None.
    ``average`` (meta.WeightAverage) with the batch's sample ``ids``: ω* replaced by its per-sample average.
    ``sgd``: the optimiser, whose next step the virtual step follows with ``meta_momentum``.
    With ``meta_kl`` k / ``meta_mixup`` p, Algorithm 1 step 6: ``+ L_pβ + p·L_uβ + k·L_KL`` (Eq. 4 and 9,
    meta.py), the batch, its strong view x̂ and the mixed pool in one forward pass. → (loss, coefficients).
    """
    import torch

    from .augment import augment_batch, cutout_batch
    from .meta import LAMBDA0, arcsine, kl_consistency, meta_coefficients, mix
    from .trusted import pseudo_label

    m = probe_images.shape[0]
    pick = torch.randperm(m, device=probe_images.device, generator=gen)[:config.probe_batch] \
        if m > config.probe_batch else torch.arange(m, device=probe_images.device)
    probe_x = normalise(augment_batch(probe_images[pick], augment, gen))
    b = x.shape[0]
    strong = config.meta_kl > 0 or config.meta_mixup > 0
    inputs = [x]
    if strong:  # x̂: the standard augmentation, then cutout (IEG Sec. 5.1 without the learned policy, Sec. 6)
        inputs.append(cutout_batch(normalise(augment_batch(raw, augment, gen)), gen))
    beta = None
    if config.meta_mixup:  # Eq. 9's inputs: the pool D_p ∪ D_u ∪ D̂_u, mixed with a permutation of itself
        beta = arcsine(gen)
        pool = torch.cat([probe_x, x, inputs[1]])
        perm = torch.randperm(pool.shape[0], device=pool.device, generator=gen)
        inputs.append(mix(pool, perm, beta))
    out = model(torch.cat(inputs) if len(inputs) > 1 else x).float()  # the step's one forward pass
    logits = out[:b]  # (B, K), also the first view of the pseudo label
    pseudo = None
    if config.meta_relabel or strong:  # g(x): the mean softmax over the views, sharpened (Eq. 3)
        views = torch.softmax(out[:(2 if strong else 1) * b].detach(), dim=1).split(b)  # x, and x̂ if any
        pseudo = pseudo_label(model, raw, normalise, augment, config.pseudo_k, gen, first=views)
    coef = meta_coefficients(model, x, target, probe_x, probe_labels[pick], lr=lr,
                             pseudo=pseudo if config.meta_relabel else None, prior=prior,
                             sgd=sgd if config.meta_momentum else None)
    if average is not None:
        coef = dataclasses.replace(coef, weights=average(ids, coef.weights))
    log_p = torch.log_softmax(logits, dim=1)  # (B, K)
    if config.meta_relabel:
        mixed = LAMBDA0 * target + (1.0 - LAMBDA0) * pseudo  # P(λ₀)
        chosen = torch.where(coef.keep_given[:, None], target, pseudo)  # y*
        loss = -(coef.weights * (mixed * log_p).sum(dim=1)).sum() - (chosen * log_p).sum(dim=1).mean()
    else:
        loss = -(coef.weights * (target * log_p).sum(dim=1)).sum()
    if config.meta_kl:
        loss = loss + config.meta_kl * kl_consistency(logits, out[b:2 * b])
    if config.meta_mixup:
        k = logits.shape[1]
        probe_y = torch.nn.functional.one_hot(probe_labels[pick], k).float()
        mixed_y = mix(torch.cat([probe_y, pseudo, pseudo]), perm, beta)
        ce = soft_ce(out[2 * b:], mixed_y)  # (M + 2B,)
        mp = probe_x.shape[0]
        loss = loss + ce[:mp].mean() + config.meta_mixup * ce[mp:].mean()  # L_pβ + p·L_uβ
    return loss, coef


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

    from .audit import load_audit
    from .augment import augment_batch
    from .device import resolve_device
    from .loop import (Normalise, autocast_for, batched_logits, device_images, device_labels, device_model,
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
    ds = _load(data, manifest, root, config, image_size, progress)
    keep, train_labels, train_weights, changes = _training_set(ds, aud, config)
    t_matrix, t_info = _transition(aud, ds.classes, config) if aud is not None else (None, {})
    eval_ds = None
    if eval_data is not None or eval_manifest is not None:
        eval_ds = _load(eval_data, eval_manifest, eval_root, config, image_size, None)
        unknown_classes = sorted(set(eval_ds.classes) - set(ds.classes))
        if unknown_classes:
            raise UsageError(f"--eval: label(s) {', '.join(unknown_classes[:5])} are not classes of the training "
                             f"data ({', '.join(ds.classes[:8])}…); the held-out set must use the same classes")
    trust = None
    if trusted is not None:
        from .trusted import load_trusted

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
                loss, coef = _meta_loss(model, x, target, images[ids], augment, gen, probe_images, probe_labels,
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

def load_model(model_dir: str | Path, device=None):
    """(network in eval mode, model.json as a dict) from a MODEL_DIR written by :func:`train`.
    Reads the weights with ``torch.load(..., weights_only=True)``."""
    import torch

    model_dir = Path(model_dir)
    info_path = model_dir / MODEL_JSON
    if not info_path.is_file() or not (model_dir / MODEL_FILE).is_file():
        raise UsageError(f"{model_dir}: not a model folder (no {MODEL_JSON} or {MODEL_FILE}); pass the --out of "
                         "`labelaudit train`")
    try:
        info = json.loads(info_path.read_text())
        state = torch.load(model_dir / MODEL_FILE, map_location="cpu", weights_only=True)
        model = build_model(info["model"], len(info["classes"]))
        model.load_state_dict(state)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UsageError(f"{model_dir}: cannot load the model ({str(exc).splitlines()[0]}); train it again") from None
    return model.to(device or "cpu").eval(), info


def predict(model_dir: str | Path, data: str | Path | None = None, *, manifest=None, root=None,
            out: str | Path | None = None, device: str = "auto", batch_size: int = 256, workers: int = 0,
            progress: Progress | None = None, allow_outside_root: bool = False) -> pd.DataFrame:
    """Predict every image of ``data`` (folder or manifest) with a trained model.

    Returns (and writes to ``out`` as Parquet, when given) path, given_label, predicted_label,
    confidence and one ``p_<class>`` column per class. Unreadable images are left out (as in scan).
    """
    import torch

    from .device import resolve_device
    from .loop import Normalise, autocast_for, batched_logits, device_images

    dev = resolve_device(device)
    model, info = load_model(model_dir, dev)
    ds = _load(data, manifest, root, TrainConfig(workers=workers, allow_outside_root=allow_outside_root),
               int(info["image_size"]), progress)
    normalise = Normalise(torch.tensor(info["mean"], device=dev).view(1, 3, 1, 1),
                          torch.tensor(info["std"], device=dev).view(1, 3, 1, 1))
    logits = batched_logits(model, device_images(ds.images, dev), normalise, batch_size, autocast_for(dev))
    probs = torch.softmax(logits, dim=1).cpu().numpy()
    classes = [str(c) for c in info["classes"]]
    pred = probs.argmax(axis=1)
    df = pd.DataFrame({"path": ds.samples["path"], "given_label": ds.samples["given_label"],
                       "predicted_label": np.asarray(classes, dtype=object)[pred],
                       "confidence": probs[np.arange(len(pred)), pred].astype(np.float64)})
    for j, c in enumerate(classes):
        df[f"p_{c}"] = probs[:, j].astype(np.float64)
    if out is not None:
        write_parquet(df, Path(out))
    return df
