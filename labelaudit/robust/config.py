"""The settings of ``labelaudit train``: one frozen dataclass with a default and a why for every field."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError
from ..export import DEFAULT_MIN_CONFIDENCE
from ..training.augment import AUGMENTS
from ..training.backbones import check_model
from ..training.models import MIN_IMAGE_SIZE
from .losses import CORRECTIONS, LC_WEIGHTINGS


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of ``labelaudit train``, with its default. The CLI's options map one to one."""

    # --- data (as in scan)
    image_size: int | None = None  # px; None = the audit's (32 without an audit)
    workers: int = 0  # decode processes; 0 = one per core, at most 8
    cache: bool = True  # reuse the scan's decoded-image cache
    cache_dir: str | None = None  # decoded-image cache; None = $LABELAUDIT_CACHE or ~/.cache/labelaudit
    path_column: str = "path"  # manifest column holding image paths
    label_column: str = "label"  # manifest column holding labels
    allow_outside_root: bool = False  # manifest: accept paths outside its root
    # --- model and schedule
    model: str = "small"  # network: tiny | small | medium | resnet18, or any torchvision classification model
    pretrained: str | None = None  # start from these weights: a torchvision weights name (DEFAULT, ...) or a state-dict file
    freeze: bool = False  # train a linear head on the pretrained backbone's frozen embeddings (computed once, cached)
    epochs: int = 40  # longer than the proxy's 15: this model is the one you keep
    batch_size: int = 128  # samples per step; lower it when the GPU runs out of memory
    lr: float = 0.1  # peak SGD learning rate of the one-cycle schedule (warm-up, then cosine to ~0)
    momentum: float = 0.9  # SGD Nesterov momentum
    weight_decay: float = 5e-4  # L2 on all weights
    augment: str | None = None  # crop+flip | crop | none; None = the audit's (crop+flip without one)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0  # same seed + same device + same data → same model
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
    # --- interruption
    resume: bool = False  # continue from the checkpoint the last finished epoch left in the output folder

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
        check_model(self.model)
        if self.freeze and not self.pretrained:
            raise UsageError("--freeze: a frozen network needs its weights; add --pretrained (a torchvision weights "
                             "name such as DEFAULT, or a state-dict file)")
        if self.freeze and self.needs_trusted:
            raise UsageError("--freeze with --meta-reweight/--meta-relabel: the meta step trains on augmented images, "
                             "not on frozen embeddings; fine-tune instead (leave out --freeze)")
        for option, what, value, names in (("--correction", "correction", self.correction, CORRECTIONS),
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
        if self.needs_trusted and self.correction != "none":
            raise UsageError(f"--correction {self.correction} with the meta step: the meta step trains on its own "
                             "coefficients and never applies a loss correction; choose one")
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
        from ..data.decode import default_workers

        return self.workers or default_workers()

    @property
    def needs_trusted(self) -> bool:
        return self.meta_reweight or self.meta_relabel

    @property
    def needs_audit(self) -> bool:
        return self.weights or self.drop_issues or self.relabel or self.correction != "none"
