"""The second run's data: the scan's sources and decode stages, aligned with the audit, with what the
chosen methods change (weights, dropped or relabelled samples) and the correction's matrix."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.cache import cache_dir_for
from ..data.sources import list_data
from ..errors import UsageError
from ..noise.transition import transition_matrix
from ..progress import Progress
from ..training.distributed import current, decode_shared
from .config import TrainConfig
from .losses import condition_transition


def load_data(data, manifest, root, config: TrainConfig, image_size: int, progress: Progress | None):
    """Listing + decode through the scan's stages (same cache, same errors)."""
    listing = list_data(data, manifest, root, path_column=config.path_column, label_column=config.label_column,
                        allow_outside_root=config.allow_outside_root)
    return decode_shared(listing, image_size=image_size, workers=config.decode_workers,  # ranks split the decoding
                         cache_dir=cache_dir_for(config.cache, config.cache_dir), progress=progress, world=current())


def _align(audit, ds) -> np.ndarray:
    """Row of the audit's samples.parquet for each training sample (by path); UsageError when the
    audit does not cover the data or its classes differ."""
    audit_classes = [str(c) for c in audit.run.data.classes]
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


def training_set(ds, audit, config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
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


def correction_matrix(audit, classes: list[str], config: TrainConfig) -> tuple[np.ndarray | None, dict]:
    """The matrix the correction uses: T (forward) or T⁻¹ of T mixed with I as needed (backward)."""

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
