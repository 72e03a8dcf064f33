"""run.json: what a scan ran with and what it found, as one typed record (../CONTRACT.md,
docs/outputs.md).

:class:`RunRecord` is the only code that writes and reads run.json: :func:`run_record` builds it from a
scan's parts, ``to_json`` lays out the file's keys (the contract's names, which benchmarks and users
read), ``from_json`` reads a file back, older ones included (a key they lack is None). The summary,
report, check and train read its attributes. For notebooks that index the file's dict,
``record["summary"]["noise_rate"]`` still works (``__getitem__`` reads ``to_json()``).
"""
from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from ..dynamics.pseudo import TAU
from ..noise.calibration import Calibration
from ..noise.mixture import BOOTSTRAP_LEVEL, BOOTSTRAP_ROUNDS, NoiseFit
from ..noise.transition import top_flows
from ..scores import proxy_agreement


class _JsonView:
    """Read access by the JSON file's keys, for code written against the plain dict."""

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if isinstance(value, _JsonView) else value
        return {**out, **getattr(self, "extra", {})}

    def __getitem__(self, key: str):
        return self.to_json()[key]

    def get(self, key: str, default=None):
        return self.to_json().get(key, default)

    def keys(self):
        return self.to_json().keys()

    def __contains__(self, key: str) -> bool:
        return key in self.to_json()

    @classmethod
    def from_json(cls, data: dict):
        """The record of a JSON object; keys that are not fields are kept in ``extra``."""
        known, rest = cls._split(data)
        return cls(**known, extra=rest)

    @classmethod
    def _split(cls, data: dict) -> tuple[dict, dict]:
        """(the values of this class's fields, the rest) of a JSON object."""
        names = {f.name for f in fields(cls)} - {"extra"}
        return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


@dataclass(frozen=True)
class Summary(_JsonView):
    """run.json ``summary``: the numbers people act on."""

    noise_rate: float
    noise_rate_interval: list | None = None  # [low, high], 95%
    noise_rate_model_range: list | None = None  # [low, high] when a mixture component straddles 0
    noise_rate_runs: list | None = None  # the K runs' estimates with proxy_runs = K
    proxy_agreement: float | None = None  # share of samples whose predicted class is the given label
    proxy_kappa: float | None = None  # Cohen's κ of that agreement; below 0.2: an untrustworthy audit
    n_label_issues: int = 0
    n_samples: int = 0
    n_errors: int = 0
    n_classes: int | None = None
    top_flows: list = field(default_factory=list)  # [{true, noisy, p}], the largest off-diagonal entries of T
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataInfo(_JsonView):
    """run.json ``data``: what was scanned."""

    source: str | None = None  # folder | manifest
    root: str | None = None  # the folder relative paths resolve against
    manifest: str | None = None
    n_samples: int | None = None
    n_classes: int | None = None
    classes: list = field(default_factory=list)
    fingerprint: str | None = None  # SHA-256 of the path/label listing
    extra: dict = field(default_factory=dict)  # decode statistics: n_listed, n_cached, n_decoded, ...


@dataclass(frozen=True)
class NoiseModelInfo(_JsonView):
    """run.json ``noise_model``: the method in words, the fit's details, how the interval was made."""

    method: str = ""
    extra: dict = field(default_factory=dict)  # the fit's details: components, undecided, no-class group
    interval: dict | None = None  # level, rounds, method; ``runs`` (seeds, epochs_run, noise_rates, ...)

    def to_json(self) -> dict:
        return {"method": self.method, **self.extra, "interval": self.interval}

    @property
    def runs(self) -> dict | None:
        """With proxy_runs = K: the runs' seeds, epochs, noise rates and resumed epochs."""
        return (self.interval or {}).get("runs")

    @classmethod
    def from_json(cls, data: dict | None) -> "NoiseModelInfo":
        data = dict(data or {})
        return cls(method=data.pop("method", ""), interval=data.pop("interval", None), extra=data)


@dataclass(frozen=True)
class RunRecord(_JsonView):
    """run.json as a whole."""

    summary: Summary
    data: DataInfo = field(default_factory=DataInfo)
    noise_model: NoiseModelInfo = field(default_factory=NoiseModelInfo)
    labelaudit_version: str | None = None
    config: dict = field(default_factory=dict)  # every setting as run, defaults resolved
    versions: dict = field(default_factory=dict)
    device: str | None = None
    seed: int | None = None
    timings: dict = field(default_factory=dict)  # seconds per stage
    resumed_from_epoch: int = 0
    epochs_run: int | None = None
    early_stop: dict | None = None  # the stopping rule's answer, or None
    scores: dict | None = None  # ran, fusion, score (in words), limit
    transition_source: object = None
    trusted: dict | None = None  # with a trusted set: counts, check, calibration, transition
    pseudo_labels: dict | None = None
    extra: dict = field(default_factory=dict)

    _ORDER = ("labelaudit_version", "config", "versions", "device", "seed", "timings", "resumed_from_epoch",
              "epochs_run", "early_stop", "data", "noise_model", "scores", "transition_source", "trusted",
              "pseudo_labels", "summary")

    def to_json(self) -> dict:
        view = {name: getattr(self, name) for name in self._ORDER}
        return {**{k: v.to_json() if isinstance(v, _JsonView) else v for k, v in view.items()}, **self.extra}

    @classmethod
    def from_json(cls, data: dict) -> "RunRecord":
        known, rest = cls._split(data)
        known["summary"] = Summary.from_json(known.get("summary") or {"noise_rate": float("nan")})
        known["data"] = DataInfo.from_json(known.get("data") or {})
        known["noise_model"] = NoiseModelInfo.from_json(known.get("noise_model"))
        known["resumed_from_epoch"] = known.get("resumed_from_epoch") or 0
        for name in ("config", "versions", "timings"):
            known[name] = known.get(name) or {}
        return cls(**known, extra=rest)

    def with_summary(self, **changes) -> "RunRecord":
        """A copy with summary fields replaced."""
        return dataclasses.replace(self, summary=dataclasses.replace(self.summary, **changes))


def interval_info(calibration: Calibration | None, runs: dict | None, stated: dict | None = None,
                  head: bool = False) -> dict:
    """run.json ``noise_model.interval``: how ``summary.noise_rate_interval`` was made."""
    if calibration is not None:
        return {"level": BOOTSTRAP_LEVEL, "method": "the calibration shift ± 1.96 standard errors "
                                                    "(its uncertainty dominates the mixture's)"}
    redone = "the confident joint recomputed" if head else "mixture refit"
    info = {"level": BOOTSTRAP_LEVEL, "rounds": BOOTSTRAP_ROUNDS,
            "method": f"percentile bootstrap over samples, {redone} each round"}
    if runs is not None:
        k = len(runs["seeds"])
        info.update(rounds=BOOTSTRAP_ROUNDS * k, runs=runs,
                    method=f"{info['method']}, the {BOOTSTRAP_ROUNDS} rounds of each of {k} proxy runs pooled")
    if stated is not None:  # noise/interval.py: the bootstrap is one of its parts
        info.update(bootstrap_method=info["method"], **stated)
    return info


def run_record(*, config, workers: int, cache_dir: Path | None, device, timings: dict, dyn, listing, ds,
               listing_fingerprint: str, fit: NoiseFit, calibration: Calibration | None, runs: dict | None,
               scorers: tuple[str, ...], limit, t_source: str, trusted_info: dict | None, samples: pd.DataFrame,
               t_matrix: np.ndarray, stated: dict | None = None, outliers: dict | None = None,
               settled: dict | None = None, head_rate: dict | None = None, trajectory: dict | None = None,
               answers_for_2_points: int | None = None, world: dict | None = None,
               backbone: dict | None = None) -> RunRecord:
    """run.json of a scan: its settings as run (defaults resolved), versions, device, timings, data
    fingerprint, how the noise model and the scores were made, and the summary."""
    import torch

    return RunRecord.from_json({
        "labelaudit_version": __version__,
        "config": {**dataclasses.asdict(config), "workers": workers,
                   "cache_dir": str(cache_dir) if cache_dir else None},
        "versions": {"labelaudit": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "device": str(device),
        "distributed": world or {"world_size": 1, "backend": None},
        **({"backbone": backbone} if backbone is not None else {}),
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
        "noise_model": {"method": fit.method, **fit.details, **({"outlier_test": outliers} if outliers else {}),
                        **({"undecided": settled} if settled else {}),
                        **({"confident_joint": head_rate} if head_rate else {}),
                        **({"trajectory_reading": trajectory} if trajectory else {}),
                        "interval": interval_info(calibration, runs, stated,
                                                  head=head_rate is not None or bool(trajectory and trajectory["used"]))},
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
            **({} if answers_for_2_points is None else {"answers_for_2_points": answers_for_2_points}),
        },
    })
