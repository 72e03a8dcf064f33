"""The settings of a scan: one frozen dataclass with a default and a why for every field, and the
parsers that turn each option's text into its value once. ``labelaudit scan``'s options, a
``--config FILE.toml`` and ``[tool.labelaudit.scan]`` in pyproject.toml all fill a :class:`ScanConfig`.
"""
from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.dataset import parse_max_errors
from .dynamics.limit import BETA_GRID, LIMIT_DISTS, LimitSettings
from .dynamics.proxy import AUTO_EPOCHS, ProxySettings
from .errors import UsageError
from .noise.mixture import NOISE_MODELS
from .noise.transition import TRANSITIONS
from .scores import FUSIONS, SCORES
from .training.augment import AUGMENTS
from .training.backbones import check_model
from .training.models import MIN_IMAGE_SIZE, MODELS


# Fine-tuning pretrained weights at the from-scratch rate memorises the noisy labels within a few epochs
# (their margins turn positive and the estimate collapses), so the whole network trains at a tenth of it,
# the usual ratio (`python benchmarks/backbones.py`: its fine-tuned rows at 0.05 and at this default).
FINE_TUNE_LR_FACTOR = 0.1


@dataclass(frozen=True)
class ScanConfig:
    """Every setting of a scan, with its default. The CLI's options map one to one onto these."""

    # --- decode + cache
    image_size: int | None = None  # px; images are resized to image_size² for the proxy; None: 32, or the weights' own
    workers: int = 0  # decode processes; 0 = one per core, at most 8
    cache: bool = True  # keep decoded images on disk so a re-scan does not decode again
    cache_dir: str | None = None  # decoded-image cache; None = $LABELAUDIT_CACHE or ~/.cache/labelaudit
    # --- proxy training
    model: str = ProxySettings.model  # proxy network: tiny | small | medium | resnet18, or a torchvision model's name
    weights: str | None = None  # start the proxy from weights: a torchvision weights name (DEFAULT, ...) or a file
    freeze: bool = False  # train a linear head on the weights' frozen embeddings (computed once, cached)
    epochs: int | str = "auto"  # auto: 15 to 30, stopping when the proxy starts to memorise; N: exactly N
    batch_size: int = ProxySettings.batch_size  # samples per step; lower it when the GPU runs out of memory
    lr: float | None = None  # constant SGD learning rate (AUL is read before any drop); None = 0.05, a tenth of it fine-tuning --weights
    augment: str = ProxySettings.augment  # crop+flip | crop | none; crop for digits, text and symbols
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: bool = False  # torch.compile the proxy; pays off on long GPU runs
    seed: int = 0  # same seed + same device + same data → same outputs
    proxy_runs: int = 1  # K > 1: K − 1 more proxies (seeds seed+1, ...) widen the rate's interval, not the outputs
    # --- scores and decisions
    scores: str | None = None  # scores fused into `score`: a comma list of aul, aum, limit (two more networks), knn (--weights); None = aum, and aum,knn with --weights
    fusion: str = "z-mean"  # how several scores are fused: z-mean | rank-mean | posterior-mean
    limit_dist: str = LimitSettings.dist  # LIMIT's gradient predictor: gaussian (MSE) | laplace (MAE)
    limit_beta: float = LimitSettings.beta  # LIMIT's penalty β on the predicted gradient's norm
    limit_model: str = LimitSettings.model  # LIMIT's two networks: tiny | small | medium | resnet18
    limit_average_epochs: float = LimitSettings.average_epochs  # LIMIT scores with q averaged over this many epochs
    noise_model: str = "margin"  # margin (mixture on AUM; below 0 = mislabeled) | aul-gmm (the AUL paper's)
    threshold: float = 0.5  # is_label_issue = p_mislabeled > threshold
    fdr: float = 0.05  # when the mixture flags nothing: flag scores far out in the clean bulk's tail at this false-discovery rate (0: off)
    transition: str = "counts"  # transition-matrix estimator: counts | anchors (Patrini's anchor points)
    anchor_quantile: float = 0.97  # anchors: the quantile of p(label = i | x) that picks class i's anchor; 1 = argmax
    # --- report
    report: bool = True  # write report.html into the output folder
    report_top: int = 48  # suspects shown as thumbnails in report.html
    # --- manifest columns and input checks
    path_column: str = "path"  # manifest column holding image paths
    label_column: str = "label"  # manifest column holding labels
    max_errors: str | None = None  # abort when more files than this fail: a count ("20") or a share ("5%")
    dedupe: bool = False  # manifest: keep the first row of a file listed twice (else: an error)
    allow_outside_root: bool = False  # manifest: accept paths outside its root (.., absolute paths elsewhere)
    # --- trusted set and pseudo labels (IEG)
    trusted: str | None = None  # manifest of hand-verified path,label rows: T from pairs, a check of the audit
    trusted_calibration: bool = True  # with trusted: recalibrate p(mislabeled) on the verified samples in the data
    pseudo_labels: str = "mean"  # predicted_label from: mean (softmax over epochs) | augment (IEG Eq. 3)
    pseudo_k: int = 8  # pseudo_labels augment: views averaged (the image and K − 1 augmentations)
    # --- interruption
    resume: bool = False  # continue from the checkpoint the last finished epoch left in the output folder

    @property
    def learning_rate(self) -> float:
        """``lr``, else the proxy's 0.05 from scratch or on frozen embeddings, and FINE_TUNE_LR_FACTOR of it
        when the whole network fine-tunes from ``weights``."""
        if self.lr is not None:
            return self.lr
        return ProxySettings.lr * (FINE_TUNE_LR_FACTOR if self.weights and not self.freeze else 1.0)

    @property
    def scorers(self) -> tuple[str, ...]:
        """The scores fused into ``score``: ``scores``, else AUM, with the neighbourhood score beside it when
        a pretrained backbone gives embeddings (``--weights``, frozen or fine-tuned: fused, it ranked better
        on the CIFAR cases of ``python benchmarks/backbones.py``)."""
        return parse_scores(self.scores or ("aum,knn" if self.weights else "aum"))

    def limit_settings(self) -> LimitSettings:
        """The LIMIT pair's settings from the --limit-* options (unvalidated)."""
        return LimitSettings(dist=self.limit_dist, beta=self.limit_beta, model=self.limit_model,
                             average_epochs=self.limit_average_epochs)

    @classmethod
    def build(cls, config: "ScanConfig | None" = None, **options) -> "ScanConfig":
        """``config`` (default: the defaults) with single fields overridden by ``options``, validated."""
        return with_options(cls, config, options, "scan")

    def validate(self) -> "ScanConfig":
        """The config with ``epochs`` in its one spelling ("auto" or an int), or UsageError."""
        checks = [
            (self.image_size is None or MIN_IMAGE_SIZE <= self.image_size <= 1024, "--image-size", self.image_size,
             f"a side length from {MIN_IMAGE_SIZE} to 1024 px"),
            (self.workers >= 0, "--workers", self.workers, "0 (auto) or a positive number"),
            (self.batch_size >= 2, "--batch-size", self.batch_size, "at least 2"),
            (self.lr is None or self.lr > 0 and np.isfinite(self.lr), "--lr", self.lr, "a positive number"),
            (0.0 < self.threshold < 1.0, "--threshold", self.threshold, "a probability strictly between 0 and 1"),
            (0.0 <= self.fdr < 1.0, "--fdr", self.fdr, "a rate from 0 (off) to below 1"),
            (0.0 < self.anchor_quantile <= 1.0, "--anchor-quantile", self.anchor_quantile, "a number in (0, 1]"),
            (self.report_top >= 0, "--report-top", self.report_top, "0 or more"),
            (self.limit_model in MODELS, "--limit-model", self.limit_model, f"one of {', '.join(MODELS)}"),
            (self.limit_dist in LIMIT_DISTS, "--limit-dist", self.limit_dist, f"one of {', '.join(LIMIT_DISTS)}"),
            (0 <= self.limit_beta < float("inf"), "--limit-beta", self.limit_beta,
             f"a number ≥ 0 (the paper's grid: {', '.join(map(str, BETA_GRID))})"),
            (0 <= self.limit_average_epochs < float("inf"), "--limit-average-epochs", self.limit_average_epochs,
             "a number of epochs ≥ 0 (0 scores with q's last weights)"),
            (1 <= self.proxy_runs <= MAX_PROXY_RUNS, "--proxy-runs", self.proxy_runs,
             f"a number of proxy trainings from 1 to {MAX_PROXY_RUNS}"),
        ]
        if self.proxy_runs > 1 and self.trusted is not None and self.trusted_calibration:
            raise UsageError("--proxy-runs with --trusted: a calibrated estimate's interval comes from the verified "
                             "labels, not from the proxy; leave out --proxy-runs (or add --no-trusted-calibration)")
        if self.max_errors is not None:
            parse_max_errors(self.max_errors)
        scorers = self.scorers
        if self.freeze and not self.weights:
            raise UsageError("--freeze: a frozen network needs its weights; add --weights (a torchvision weights "
                             "name such as DEFAULT, or a file)")
        if self.freeze and "limit" in scorers:
            raise UsageError("--scores limit with --freeze: LIMIT trains two image networks of its own; with frozen "
                             "embeddings use aum, aul or knn")
        if "knn" in scorers and not self.weights:
            raise UsageError("--scores knn: the neighbourhood score reads a pretrained backbone's embeddings; add "
                             "--weights (a torchvision weights name such as DEFAULT, or a file)")
        if self.pseudo_labels not in PSEUDO_LABELS:
            raise UsageError(f"--pseudo-labels {self.pseudo_labels!r}: choose one of {', '.join(PSEUDO_LABELS)}")
        if self.pseudo_k < 1:
            raise UsageError(f"--pseudo-k {self.pseudo_k}: expected at least 1")
        for ok, option, value, expected in checks:
            if not ok:
                raise UsageError(f"{option} {value!r}: expected {expected}")
        check_model(self.model)
        for option, what, value, names in (("--augment", "augmentation", self.augment, AUGMENTS),
                                           ("--fusion", "fusion rule", self.fusion, FUSIONS),
                                           ("--noise-model", "noise model", self.noise_model, NOISE_MODELS),
                                           ("--transition", "transition estimator", self.transition, TRANSITIONS)):
            if value not in names:
                raise UsageError(f"{option} {value!r}: unknown {what}; choose one of {', '.join(names)}")
        epochs, stop_from = parse_epochs(self.epochs)
        return dataclasses.replace(self, epochs="auto" if stop_from is not None else epochs)


PSEUDO_LABELS = ("mean", "augment")
MAX_PROXY_RUNS = 20


def parse_epochs(value: int | str) -> tuple[int, int | None]:
    """``--epochs``: ``"auto"`` → (30, 15): at most 30, stopping from epoch 15 on at the onset of
    memorisation (proxy.memorisation_check); ``N`` (an int or its text) → (N, None): exactly N."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return AUTO_EPOCHS[1], AUTO_EPOCHS[0]
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, float) or n < 1:
        raise UsageError(f"--epochs {value}: expected auto or a whole number of epochs, at least 1")
    return n, None


def parse_scores(text: str) -> tuple[str, ...]:
    """``"aum,limit"`` → ("aum", "limit"): the scorers a scan runs and fuses into ``score``. AUL and AUM
    come from the proxy's own run and are always written; ``limit`` adds the LIMIT pair."""
    names = tuple(dict.fromkeys(s.strip().lower() for s in str(text).split(",") if s.strip()))
    unknown = [n for n in names if n not in SCORES]
    if not names or unknown:
        raise UsageError(f"--scores {text!r}: expected a comma list of {', '.join(SCORES)} (e.g. aul,aum,limit)")
    return names




def with_options(settings_cls, config, options: dict, command: str):
    """``config`` (a ``settings_cls``; None: the defaults) with single fields overridden by
    ``options``, validated; UsageError naming an option that is not a field of ``command``."""
    config = config or settings_cls()
    unknown = set(options) - {f.name for f in dataclasses.fields(settings_cls)}
    if unknown:
        raise UsageError(f"unknown {command} option(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(config, **options).validate()


def field_types(annotation) -> set[str]:
    """The type names a settings field takes, from its annotation: ``"int | str"`` → {"int", "str"}."""
    return {part.strip() for part in str(annotation).split("|")}


# --------------------------------------------------------------------- settings files and --config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILES = ("labelaudit.toml", "pyproject.toml")  # searched from the working folder up


def section_of(data: dict, path: Path, section: str) -> dict | None:
    """``[tool.labelaudit.<section>]`` (pyproject.toml or any file), or ``[<section>]`` in another file."""
    table = data.get("tool", {}).get("labelaudit", {}).get(section)
    if table is None and path.name != "pyproject.toml":
        table = data.get(section)
    return table


def read_toml(path: Path, option: str = "--config") -> dict:
    """A TOML file as a dict; UsageError naming the file when it cannot be read or parsed."""
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc}); fix the file") from None


def find_config(section: str, start: str | Path = ".") -> Path | None:
    """The nearest labelaudit.toml or pyproject.toml holding a ``section`` table, from ``start`` up."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        for name in CONFIG_FILES:
            candidate = folder / name
            if candidate.is_file() and (name == "labelaudit.toml" or b"labelaudit" in candidate.read_bytes()):
                try:
                    if section_of(tomllib.loads(candidate.read_text()), candidate, section) is not None:
                        return candidate
                except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                    if name == "labelaudit.toml":
                        return candidate  # let the reader report the syntax error
    return None


def settings_table(path: Path, section: str) -> dict:
    """The ``section`` table of a settings file; UsageError when the file has none."""
    table = section_of(read_toml(path), Path(path), section)
    if table is None:
        raise UsageError(f"{path}: no [{section}] or [tool.labelaudit.{section}] table; add one, e.g. "
                         f"[tool.labelaudit.{section}] with one setting a line")
    return table


def _field_value(name: str, value, annotation, where: str):
    """``value`` from TOML, checked against the field's type (int | float | bool | str, or None); an
    integer for a float field becomes a float."""
    types = field_types(annotation)
    if value is None:
        ok = "None" in types
    elif isinstance(value, bool):
        ok = "bool" in types
    elif isinstance(value, int):
        ok = bool({"int", "float"} & types)
    else:
        ok = type(value).__name__ in types
    if not ok:
        raise UsageError(f"{where}{name.replace('_', '-')} = {value!r}: expected {' or '.join(sorted(types))}")
    if isinstance(value, int) and not isinstance(value, bool) and "float" in types and "int" not in types:
        return float(value)
    return value


def settings(settings_cls, sources: list[str] | tuple[str, ...] = (), *, section: str,
             discover: bool = True, start: str | Path = ".") -> dict:
    """The field values of ``settings_cls`` (ScanConfig, TrainConfig) set by settings files, in order:
    the nearest ``[tool.labelaudit.<section>]`` (pyproject.toml) or ``[<section>]`` (labelaudit.toml)
    when ``discover``, then each of ``sources``: a TOML file, or one inline ``key = value`` line
    (``--config 'proxy_runs = 3'``). Keys are field names, with ``-`` or ``_``. A later source wins."""
    fields = {f.name: f.type for f in dataclasses.fields(settings_cls)}
    found: list[tuple[dict, str]] = []
    if discover and (path := find_config(section, start)) is not None:
        found.append((settings_table(path, section), f"{path}: "))
    for source in sources:
        text = str(source)
        if "=" in text and not Path(text).is_file():
            try:
                found.append((tomllib.loads(text), f"--config {text!r}: "))
            except tomllib.TOMLDecodeError as exc:
                raise UsageError(f"--config {text!r}: not a file, nor a TOML line 'key = value' ({exc}); "
                                 "quote strings: --config 'augment = \"crop\"'") from None
        else:
            path = Path(text)
            if not path.is_file():
                raise UsageError(f"--config {text}: no such file; pass a TOML file or one 'key = value' line")
            found.append((settings_table(path, section), f"{path}: "))
    values = {}
    for table, where in found:
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in fields:
                close = difflib.get_close_matches(name, fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UsageError(f"{where}unknown {section} setting {key!r}{hint}; "
                                 f"`labelaudit settings {section}` lists them")
            values[name] = _field_value(name, value, fields[name], where)
    return values
