"""run.json: what a scan ran with and what it found, in one record (../CONTRACT.md, docs/outputs.md).

:func:`run_record` is the one place that lays out run.json's keys; summary, report, check and train
read it back through :class:`~labelaudit.audit.read.Audit`.
"""
from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from ..dynamics.pseudo import TAU
from ..noise.calibration import Calibration
from ..noise.mixture import BOOTSTRAP_LEVEL, BOOTSTRAP_ROUNDS, NoiseFit
from ..noise.transition import top_flows
from ..scores import proxy_agreement


def interval_info(calibration: Calibration | None, runs: dict | None) -> dict:
    """run.json ``noise_model.interval``: how ``summary.noise_rate_interval`` was made."""
    if calibration is not None:
        return {"level": BOOTSTRAP_LEVEL, "method": "the calibration shift ± 1.96 standard errors "
                                                    "(its uncertainty dominates the mixture's)"}
    info = {"level": BOOTSTRAP_LEVEL, "rounds": BOOTSTRAP_ROUNDS,
            "method": "percentile bootstrap over samples, mixture refit each round"}
    if runs is not None:
        k = len(runs["seeds"])
        info.update(rounds=BOOTSTRAP_ROUNDS * k, runs=runs,
                    method=f"{info['method']}, the {BOOTSTRAP_ROUNDS} rounds of each of {k} proxy runs pooled")
    return info


def run_record(*, config, workers: int, cache_dir: Path | None, device, timings: dict, dyn, listing, ds,
               listing_fingerprint: str, fit: NoiseFit, calibration: Calibration | None, runs: dict | None,
               scorers: tuple[str, ...], limit, t_source: str, trusted_info: dict | None, samples: pd.DataFrame,
               t_matrix: np.ndarray) -> dict:
    """run.json of a scan: its settings as run (defaults resolved), versions, device, timings, data
    fingerprint, how the noise model and the scores were made, and the summary."""
    import torch

    return {
        "labelaudit_version": __version__,
        "config": {**dataclasses.asdict(config), "workers": workers,
                   "cache_dir": str(cache_dir) if cache_dir else None},
        "versions": {"labelaudit": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "device": str(device),
        "seed": config.seed,
        "timings": timings,
        "resumed_from_epoch": dyn.resumed_from_epoch,
        "epochs_run": int(dyn.loss.shape[0]),
        "early_stop": dyn.stopped,
        "data": {"source": listing.source, "root": str(Path(listing.root).resolve()),
                 "manifest": str(listing.manifest.resolve()) if listing.manifest else None,
                 "n_samples": len(ds.samples),
                 "n_classes": len(ds.classes), "classes": ds.classes,
                 "fingerprint": listing_fingerprint, **ds.stats},
        "noise_model": {"method": fit.method, **fit.details,
                        "interval": interval_info(calibration, runs)},
        "scores": {"ran": list(scorers), "fusion": config.fusion if len(scorers) > 1 else None,
                   "score": (f"{config.fusion} of {', '.join(scorers)}" if len(scorers) > 1 else
                             f"{scorers[0]} alone") + " (higher = more likely mislabeled)",
                   "limit": None if limit is None else dataclasses.asdict(limit)},
        "transition_source": t_source,
        "trusted": trusted_info,
        "pseudo_labels": {"method": config.pseudo_labels,
                          **({"k": config.pseudo_k, "tau": TAU, "equation": "IEG Eq. 3"}
                             if config.pseudo_labels == "augment" else {})},
        "summary": {
            "noise_rate": fit.noise_rate,
            "noise_rate_interval": list(fit.interval) if fit.interval else None,
            "noise_rate_model_range": list(fit.model_range) if fit.model_range else None,
            "noise_rate_runs": None if runs is None else runs["noise_rates"],
            **{f"proxy_{k}": v for k, v in proxy_agreement(dyn.mean_probs.argmax(axis=1), ds.labels).items()},
            "n_label_issues": int(samples["is_label_issue"].sum()),
            "n_samples": int(len(samples)),
            "n_errors": int(len(ds.errors)),
            "n_classes": len(ds.classes),
            "top_flows": top_flows(t_matrix, ds.classes),
        },
    }
