"""The scan: sources → decode/cache → proxy training → scores → noise model → outputs.

``scan()`` is the Python API and the body of ``labelaudit scan``; the CLI only parses options,
shows progress and prints. Settings live in one frozen dataclass, :class:`ScanConfig`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import __version__
from .progress import Progress
from .audit import Audit
from .checkpoint import Checkpointer, checkpoint_files, checkpoint_key, run_checkpoint_file
from .augment import AUGMENTS
from .cache import array_digest, cache_dir_for
from .dataset import Dataset, error_digest, load_dataset
from .decode import default_workers
from .errors import DataError, UsageError
from .mixture import BOOTSTRAP_LEVEL, BOOTSTRAP_ROUNDS, NOISE_MODELS, NoiseFit, fit_noise, noise_table, \
    percentile_interval
from .models import MIN_IMAGE_SIZE, MODELS
from .outputs import SAMPLE_COLUMNS, AuditTables, write_audit, write_parquet
from .proxy import AUTO_EPOCHS, ProxySettings
from .limit import LimitSettings
from .scores import FUSIONS, SCORES, aul, aum, fuse, proxy_agreement, rank_descending
from .sources import MANIFEST_SUFFIXES, Listing, list_folder, list_manifest
from .trusted import TAU, Calibration, TrustedSet, calibrate, check_audit, combine_transition, load_trusted, \
    pair_transition
from .transition import TRANSITIONS, count_joint, estimate_transition, given_label_rates, top_flows, transition_frame


@dataclass(frozen=True)
class ScanConfig:
    """Every setting of a scan, with its default. The CLI's options map one to one onto these."""

    # --- decode + cache
    image_size: int = 32  # px; images are resized to image_size² for the proxy
    workers: int = 0  # decode processes; 0 = one per core, at most 8
    cache: bool = True  # keep decoded images on disk so a re-scan does not decode again
    cache_dir: str | None = None  # None = $LABELAUDIT_CACHE or ~/.cache/labelaudit
    # --- proxy training (see proxy.ProxySettings for the why of each)
    model: str = ProxySettings.model  # small | medium | resnet18
    epochs: int | str = "auto"  # auto: 15 to 30, stopping at the onset of memorisation (proxy.py); N: exactly N
    batch_size: int = ProxySettings.batch_size
    lr: float = ProxySettings.lr  # constant: AUL is read before any learning-rate drop
    augment: str = ProxySettings.augment  # crop+flip | crop | none ("crop" for digits, text, symbols)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: bool = False  # torch.compile the proxy (worth it on a GPU for long runs; docs/performance.md)
    seed: int = 0  # same seed + same device + same data → same outputs
    proxy_runs: int = 1  # K > 1: K − 1 more proxies (seeds seed+1..) whose estimates widen the interval, not the outputs
    # --- scores and decisions
    scores: str = "aum"  # scorers fused into `score`: a comma list of aul, aum, limit (benchmarks/fusion.py: AUM
    #                      alone ranks best on the development photo sets; LIMIT helps on digits, docs/scores.md)
    fusion: str = "z-mean"  # how `score` combines several (benchmarks/fusion.py): z-mean | rank-mean | posterior-mean
    limit_dist: str = LimitSettings.dist  # LIMIT's q: gaussian (LIMIT_G, MSE) | laplace (LIMIT_L, MAE)
    limit_beta: float = LimitSettings.beta  # LIMIT's β‖µ‖² weight (benchmarks/limit_beta.py)
    limit_model: str = LimitSettings.model  # LIMIT's f and q networks (tiny: < 2× the proxy's time on a CPU)
    limit_average_epochs: float = LimitSettings.average_epochs  # q that scores: its moving average over ~1 epoch
    noise_model: str = "margin"  # margin (mixture on AUM, components below 0 = mislabeled) | aul-gmm (paper)
    threshold: float = 0.5  # is_label_issue = p_mislabeled > threshold
    transition: str = "counts"  # T estimator: counts (default, by benchmarks/transition.py) | anchors (Patrini)
    anchor_quantile: float = 0.97  # anchors: the α-quantile of p̂(ỹ = i | x); 1.0 = the paper's argmax
    # --- report
    report: bool = True  # write report.html into the output folder
    report_top: int = 48  # suspects shown as thumbnails in report.html
    # --- manifest columns and input checks
    path_column: str = "path"
    label_column: str = "label"
    max_errors: str | None = None  # abort when more files than this fail: a count ("20") or a share ("5%")
    dedupe: bool = False  # manifest: keep the first row of a file listed twice (else: an error)
    allow_outside_root: bool = False  # manifest: accept paths outside --root (.., absolute paths elsewhere)
    # --- trusted set and pseudo labels (IEG)
    trusted: str | None = None  # manifest of hand-verified path,label rows: T from pairs, a check of the audit
    trusted_calibration: bool = True  # --trusted: recalibrate p(mislabeled) on the verified samples in the data
    pseudo_labels: str = "mean"  # predicted_label from: mean (softmax averaged over epochs) | augment (IEG Eq. 3)
    pseudo_k: int = 8  # augment: views averaged (the un-augmented image and K − 1 augmentations)
    # --- interruption
    resume: bool = False  # continue from <out>/checkpoint.pt (written after every epoch) when it is there

    def limit_settings(self) -> LimitSettings:
        """The LIMIT pair's settings from the --limit-* options (unvalidated)."""
        return LimitSettings(dist=self.limit_dist, beta=self.limit_beta, model=self.limit_model,
                             average_epochs=self.limit_average_epochs)

    def validate(self) -> "ScanConfig":
        """The config with ``epochs`` in its one spelling ("auto" or an int), or UsageError."""
        checks = [
            (MIN_IMAGE_SIZE <= self.image_size <= 1024, "--image-size", self.image_size,
             f"a side length from {MIN_IMAGE_SIZE} to 1024 px"),
            (self.workers >= 0, "--workers", self.workers, "0 (auto) or a positive number"),
            (self.batch_size >= 2, "--batch-size", self.batch_size, "at least 2"),
            (self.lr > 0 and np.isfinite(self.lr), "--lr", self.lr, "a positive number"),
            (0.0 < self.threshold < 1.0, "--threshold", self.threshold, "a probability strictly between 0 and 1"),
            (0.0 < self.anchor_quantile <= 1.0, "--anchor-quantile", self.anchor_quantile, "a number in (0, 1]"),
            (self.report_top >= 0, "--report-top", self.report_top, "0 or more"),
            (self.limit_model in MODELS, "--limit-model", self.limit_model, f"one of {', '.join(MODELS)}"),
            (1 <= self.proxy_runs <= MAX_PROXY_RUNS, "--proxy-runs", self.proxy_runs,
             f"a number of proxy trainings from 1 to {MAX_PROXY_RUNS}"),
        ]
        if self.proxy_runs > 1 and self.trusted is not None and self.trusted_calibration:
            raise UsageError("--proxy-runs with --trusted: a calibrated estimate's interval comes from the verified "
                             "labels, not from the proxy; leave out --proxy-runs (or add --no-trusted-calibration)")
        if self.max_errors is not None:
            parse_max_errors(self.max_errors)
        parse_scores(self.scores)
        if self.pseudo_labels not in PSEUDO_LABELS:
            raise UsageError(f"--pseudo-labels {self.pseudo_labels!r}: choose one of {', '.join(PSEUDO_LABELS)}")
        if self.pseudo_k < 1:
            raise UsageError(f"--pseudo-k {self.pseudo_k}: expected at least 1")
        self.limit_settings().validate()
        for ok, option, value, expected in checks:
            if not ok:
                raise UsageError(f"{option} {value!r}: expected {expected}")
        for option, what, value, names in (("--model", "model", self.model, MODELS),
                                           ("--augment", "augmentation", self.augment, AUGMENTS),
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


def parse_max_errors(value: str | int) -> tuple[float, bool]:
    """``"20"`` → (20, False): at most 20 files; ``"5%"`` → (0.05, True): at most 5% of the listed files."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100.0
            if 0.0 <= share <= 1.0:
                return share, True
        else:
            count = int(text)
            if count >= 0:
                return float(count), False
    except ValueError:
        pass
    raise UsageError(f"--max-errors {value!r}: expected a count (20) or a share of the files (5%)")


def check_max_errors(limit: str | None, errors: pd.DataFrame, n_listed: int) -> None:
    """DataError when more files failed than ``--max-errors`` allows."""
    if limit is None:
        return
    bound, is_share = parse_max_errors(limit)
    allowed = bound * n_listed if is_share else bound
    if len(errors) > allowed:
        raise DataError(f"--max-errors {limit}: {len(errors)} of {n_listed} listed file(s) failed, more than "
                        f"allowed, {error_digest(errors)}. Fix or remove them (errors.parquet lists every "
                        "one), or raise --max-errors",
                        errors=errors)


@dataclass
class ScanResult(AuditTables):
    """What a scan produced: the tables of the audit folder, and run.json as a dict."""

    samples: pd.DataFrame
    noise: pd.DataFrame
    trajectories: pd.DataFrame
    errors: pd.DataFrame
    run: dict
    classes: list[str]
    transition: pd.DataFrame
    out: Path | None = None

    def audit(self) -> Audit:
        """The same tables as an :class:`~labelaudit.audit.Audit` (what check, export, show and report
        take), without reading the folder back; its path is ``out`` (None when nothing was written)."""
        return Audit(self.out, self.samples, self.noise, self.run, self.errors, self.transition)


def make_listing(data, manifest, root, config: ScanConfig) -> Listing:
    """List DATA (a folder, or a manifest given as DATA) or --manifest, with the config's column names."""
    if manifest is None and data is not None and Path(data).is_file() \
            and Path(data).suffix.lower() in MANIFEST_SUFFIXES:
        manifest, data = data, None  # `labelaudit scan labels.csv` means the manifest
    if manifest is not None:
        if data is not None:
            raise UsageError("give either DATA (an image folder) or --manifest FILE, not both")
        return list_manifest(manifest, root=root, path_column=config.path_column,
                             label_column=config.label_column, dedupe=config.dedupe,
                             allow_outside_root=config.allow_outside_root)
    if data is None:
        raise UsageError("nothing to scan: pass an image folder (DATA) or --manifest FILE")
    if root is not None:
        raise UsageError("--root goes with --manifest; for a folder, DATA is the root")
    return list_folder(data)


def _fingerprint(samples: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for path, label in zip(samples["path"], samples["given_label"]):
        h.update(f"{path}\t{label}\n".encode())
    return h.hexdigest()


def decide(p_mislabeled: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(p clipped to [0, 1], is_label_issue = p > threshold): the one rule for the flags."""
    p = np.clip(p_mislabeled, 0.0, 1.0)
    return p, p > threshold


def build_samples(ds: Dataset, *, aul_s: np.ndarray, aum_s: np.ndarray, score: np.ndarray,
                  fit: NoiseFit, mean_probs: np.ndarray, threshold: float,
                  limit_s: np.ndarray | None = None) -> pd.DataFrame:
    """samples.parquet: the contract's columns (CONTRACT.md), in its order, then extras
    (``limit_distance`` when LIMIT ran)."""
    p, flags = decide(fit.p_mislabeled, threshold)
    pred = mean_probs.argmax(axis=1)
    df = ds.samples.copy()
    df["score"] = score
    df["p_mislabeled"] = p
    df["is_label_issue"] = flags
    df["label_score"] = 1.0 - p
    df["rank"] = rank_descending(score)
    df["predicted_label"] = np.asarray(ds.classes, dtype=object)[pred]
    df["predicted_confidence"] = mean_probs[np.arange(len(pred)), pred].astype(np.float64)
    df["weight"] = 1.0 - p  # the clean probability (AUL Sec. 4.2, as its text means it)
    df["aul"] = aul_s
    df["aum"] = aum_s
    df["given_confidence"] = mean_probs[np.arange(len(pred)), ds.labels].astype(np.float64)
    extras = ["given_confidence"]
    if limit_s is not None:
        df["limit_distance"] = np.asarray(limit_s, dtype=np.float64)
        extras.append("limit_distance")
    return df[SAMPLE_COLUMNS + extras]


def _calibrated(config: ScanConfig, trust: TrustedSet | None,
                fit: NoiseFit) -> tuple[NoiseFit, Calibration | None, str | None]:
    """The noise model recalibrated on the trusted samples that are in the data (trusted.calibrate), or
    the fit unchanged and why. Returns (fit, calibration, reason it was not done)."""
    if trust is None:
        return fit, None, None
    if not config.trusted_calibration:
        return fit, None, "turned off (--no-trusted-calibration)"
    if not trust.inside.any():
        return fit, None, "no trusted sample is also in the data, so no given label was verified"
    rows, _, wrong = trust.verified_rows()
    p_new, cal = calibrate(fit.p_mislabeled, rows, wrong)
    method = (f"{fit.method}; recalibrated on {cal.n} verified samples: logit p + {cal.shift:.3f} "
              "(the mixture's prior odds re-estimated, trusted.calibrate)")
    return dataclasses.replace(fit, p_mislabeled=p_new, noise_rate=cal.noise_rate, method=method,
                               interval=cal.interval, model_range=None, draws=None), cal, None


def _apply_verified(samples: pd.DataFrame, trust: TrustedSet, classes: list[str]) -> pd.DataFrame:
    """The trusted samples that are in the data keep what was verified: p_mislabeled 1 where the
    verified label differs from the given one and 0 where it agrees (and is_label_issue, label_score,
    weight with it), predicted_label = the verified label with confidence 1, and the extra column
    ``verified_label`` (null elsewhere). ``score`` and ``rank`` stay the scorer's, so the ranking is
    still the audit's own."""
    rows, verified, wrong = trust.verified_rows()
    wrong = wrong.astype(np.float64)
    samples = samples.copy()
    col = samples.columns.get_loc
    samples.iloc[rows, col("p_mislabeled")] = wrong
    samples.iloc[rows, col("is_label_issue")] = wrong > 0
    samples.iloc[rows, col("label_score")] = 1.0 - wrong
    samples.iloc[rows, col("weight")] = 1.0 - wrong
    names = np.asarray(classes, dtype=object)[verified]
    samples.iloc[rows, col("predicted_label")] = names
    samples.iloc[rows, col("predicted_confidence")] = 1.0
    verified_col = np.full(len(samples), None, dtype=object)
    verified_col[rows] = names
    samples["verified_label"] = verified_col
    return samples


def _with_trusted(config: ScanConfig, trust: TrustedSet, ds: Dataset, flags: np.ndarray,
                  t_audit: np.ndarray, t_calibrated: np.ndarray | None) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """The trusted set's part of a scan: T from (verified, given) pairs combined with the audit's T
    (``t_calibrated`` when given: the count estimate from the posteriors after the trusted set's
    recalibration and verified labels), and how the audit did on the trusted samples
    (trusted.py). ``flags``: the unsupervised audit's is_label_issue (before any recalibration, which
    has seen these samples). Returns (T, transition frame, run.json block)."""
    k = len(ds.classes)
    t_pairs, n_pairs = pair_transition(trust.labels, trust.given, k)
    t_final, alpha = combine_transition(t_audit if t_calibrated is None else t_calibrated, t_pairs, n_pairs)
    frame = transition_frame(t_final, ds.classes)
    frame["p_audit"] = np.asarray(t_audit, dtype=np.float64).reshape(-1)
    frame["p_trusted"] = t_pairs.reshape(-1)  # NaN for a class without pairs
    if t_calibrated is not None:
        frame["p_calibrated"] = np.asarray(t_calibrated, dtype=np.float64).reshape(-1)
    flagged = np.zeros(len(trust.labels), dtype=bool)
    flagged[trust.inside] = flags[trust.verified_rows()[0]]
    counts = trust.counts(k)
    info = {
        "file": str(Path(config.trusted).resolve()), "n": int(len(trust.labels)),
        "per_class": {"min": int(counts.min()), "max": int(counts.max()),
                      "classes_without": [c for c, n in zip(ds.classes, counts) if n == 0][:20]},
        "check": check_audit(trust.labels, trust.given, flagged),
        "transition": {"method": "rows (n_i·T_pairs + α·T_audit) / (n_i + α): the posterior mean under a Dirichlet "
                                 "prior centred on the audit's row, averaged over α's posterior (log-uniform "
                                 "prior on 1..10^4 × the pairs' marginal likelihood; alpha = its geometric mean); "
                                 "n_i = trusted samples of true class i that are in the data (Patrini Sec. 5.3 pairs)",
                       "alpha": alpha, "pairs_per_class": n_pairs.astype(int).tolist()},
    }
    return t_final, frame, info


def _transition_rates(t: np.ndarray, joint: np.ndarray, ds: Dataset) -> np.ndarray:
    """noise.parquet's ``transition_rate``: the given-label rates that T implies, dataset row first.

    The true-class prior is the count joint's row mass, Σ_j C[i, j] = Σ_n P(true = i | x_n): the
    clean mass of class i plus the mislabeled mass the audit sends to i. Under ``counts`` these
    equal ``noise_rate`` exactly; under ``anchors`` they are a second, independent estimate.
    """
    prior = joint.sum(axis=1)
    rates = given_label_rates(t, prior / max(prior.sum(), 1e-12))
    given_counts = np.bincount(ds.labels, minlength=len(ds.classes))
    dataset = float((rates * given_counts).sum() / max(given_counts.sum(), 1))
    return np.concatenate([[dataset], rates])


def _more_proxy_runs(fit: NoiseFit, epochs_run: int, config: ScanConfig, settings: ProxySettings, images, labels,
                     ds: Dataset, device, progress: Progress | None,
                     checkpoint_of: Callable[..., Checkpointer | None]) -> tuple[NoiseFit, dict]:
    """``--proxy-runs K``: train K − 1 more proxies with seeds seed+1 … seed+K−1 on the same data and
    settings, fit the same noise model to each, and pool every run's bootstrap rounds into the interval.
    The scan's outputs stay those of the first run (``--seed``); only the interval (and run.json's
    ``runs``) changes; ``fit`` and ``epochs_run`` are the first run's. The interval then holds two sources of noise in the estimate: the draw of the
    samples (the bootstrap) and the proxy's own randomness (its start, batch order and augmentations,
    which a re-scan after any change in the data draws anew). Each run keeps its own per-epoch
    checkpoint (``checkpoint_of(run, settings)``), so ``--resume`` goes on from the run and epoch
    an interruption left. Returns (the fit with the pooled interval, the runs' seeds, epochs, rates and
    the epochs each run resumed from)."""
    from .proxy import train_proxy

    given = np.asarray(ds.labels)
    seeds, epochs, rates, draws, resumed = [settings.seed], [epochs_run], [fit.noise_rate], [fit.draws], []
    for r in range(1, config.proxy_runs):
        stage = f"train run {r + 1}/{config.proxy_runs}"
        run_settings = dataclasses.replace(settings, seed=settings.seed + r)
        more = train_proxy(images, labels, len(ds.classes), run_settings, device=device,
                           checkpoint=checkpoint_of(r + 1, run_settings),
                           progress=None if progress is None else
                           (lambda _stage, done, total, info, _s=stage: progress(_s, done, total, info)))
        resumed.append(more.resumed_from_epoch)
        other = fit_noise(config.noise_model, aul_scores=aul(more.loss), aum_scores=aum(more.margin),
                          random_state=settings.seed + r, given=given)  # = what scan --seed seed+r estimates
        seeds.append(settings.seed + r)
        epochs.append(int(more.loss.shape[0]))
        rates.append(other.noise_rate)
        draws.append(other.draws)
    if any(d is None for d in draws):  # a fit with no bootstrap (too few samples): the runs' own spread
        pooled = np.asarray(rates, dtype=np.float64)
    else:
        pooled = np.concatenate(draws)
    interval = percentile_interval(pooled, BOOTSTRAP_LEVEL)
    runs = {"seeds": seeds, "epochs_run": epochs, "noise_rates": rates, "resumed_from_epoch": resumed}
    return dataclasses.replace(fit, interval=interval, draws=pooled), runs


def _interval_info(calibration: Calibration | None, runs: dict | None) -> dict:
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


def trajectories_frame(loss: np.ndarray, margin: np.ndarray, limit: np.ndarray | None = None) -> pd.DataFrame:
    """Long form (sample_id, epoch, loss, margin[, limit_distance]); epochs count from 1. The per-epoch
    LIMIT distance is the training pass's (augmented, train mode), recorded at no extra cost."""
    e, n = loss.shape
    columns = {
        "sample_id": np.tile(np.arange(n, dtype=np.int64), e),
        "epoch": np.repeat(np.arange(1, e + 1, dtype=np.int64), n),
        "loss": loss.reshape(-1).astype(np.float32),
        "margin": margin.reshape(-1).astype(np.float32),
    }
    if limit is not None:
        columns["limit_distance"] = limit.reshape(-1).astype(np.float32)
    return pd.DataFrame(columns)


def scan(data: str | Path | None = None, *, out: str | Path | None = "labelaudit-out",
         manifest: str | Path | None = None, root: str | Path | None = None,
         config: ScanConfig | None = None, progress: Progress | None = None, **options) -> ScanResult:
    """Audit a dataset's labels and (unless ``out`` is None) write the audit folder.

    Parameters
    ----------
    data : an ImageFolder root (``data/<class>/**/<image>``), or a manifest file.
    out : the output folder (CONTRACT.md); None to only return the tables.
    manifest, root : a CSV/TSV/Parquet/JSONL manifest of ``path,label`` and the folder its relative
        paths resolve against (default: the manifest's folder).
    config : a :class:`ScanConfig`; ``**options`` override single fields (``epochs=5``).
    progress : called as ``progress(stage, completed, total, info)`` for stages hash, decode, train.

    Raises UsageError for bad arguments, DataError for data that cannot be audited, TrainingError
    when training diverges.
    """
    import torch

    from .device import resolve_device
    from .loop import device_images, device_labels
    from .proxy import train_proxy

    config = config or ScanConfig()
    unknown = set(options) - {f.name for f in dataclasses.fields(ScanConfig)}
    if unknown:
        raise UsageError(f"unknown scan option(s): {', '.join(sorted(unknown))}")
    config = dataclasses.replace(config, **options).validate()
    device = resolve_device(config.device)
    workers = config.workers or default_workers()
    cache_dir = cache_dir_for(config.cache, config.cache_dir)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    listing = make_listing(data, manifest, root, config)
    timings["list_s"] = time.perf_counter() - t

    t = time.perf_counter()
    try:
        ds = load_dataset(listing, image_size=config.image_size, workers=workers, cache_dir=cache_dir,
                          progress=progress)
        check_max_errors(config.max_errors, ds.errors, ds.stats["n_listed"])
    except DataError as exc:
        if out is not None and exc.errors is not None and not (Path(out) / "run.json").exists():
            Path(out).mkdir(parents=True, exist_ok=True)  # reasons for the user, never over an older audit
            write_parquet(exc.errors, Path(out) / "errors.parquet")
        raise
    trust = None
    if config.trusted is not None:  # read before training, so a bad trusted file stops the scan at once
        trust = load_trusted(config.trusted, classes=ds.classes, data_files=ds.files,
                             data_labels=ds.labels, image_size=config.image_size, workers=workers,
                             cache_dir=cache_dir, allow_outside_root=config.allow_outside_root)
    timings["load_s"] = time.perf_counter() - t

    # --- proxy training, recording dynamics
    t = time.perf_counter()
    images = device_images(ds.images, device)  # (N, 3, S, S) uint8
    labels = device_labels(ds.labels, device)
    max_epochs, stop_from = parse_epochs(config.epochs)
    settings = ProxySettings(model=config.model, epochs=max_epochs, stop_from=stop_from,
                             batch_size=config.batch_size, lr=config.lr, augment=config.augment,
                             seed=config.seed, compile=config.compile)
    scorers = parse_scores(config.scores)
    limit = config.limit_settings() if "limit" in scorers else None
    fingerprint = _fingerprint(ds.samples)
    if out is None and config.resume:
        raise UsageError("--resume needs an output folder: the checkpoint lives there")
    data_key = dict(device=device.type, image_size=config.image_size, classes=ds.classes,
                    listing=fingerprint, pixels=array_digest(ds.images))

    def checkpoint_of(run: int, run_settings: ProxySettings, run_limit: LimitSettings | None = None
                      ) -> Checkpointer | None:
        """Run ``run``'s (1 = the audit's own) per-epoch checkpoint in ``out``, resumed only on the very
        same settings, listing and pixels; None without an output folder."""
        if out is None:
            return None
        key = checkpoint_key(settings=dataclasses.asdict(run_settings),
                             limit=run_limit and dataclasses.asdict(run_limit), **data_key)
        return Checkpointer(Path(out) / run_checkpoint_file(run), key, resume=config.resume)

    checkpoint = checkpoint_of(1, settings, limit)
    dyn = train_proxy(images, labels, len(ds.classes), settings, device=device, progress=progress, limit=limit,
                      checkpoint=checkpoint, pseudo_k=config.pseudo_k if config.pseudo_labels == "augment" else 0)
    timings["train_s"] = time.perf_counter() - t

    # --- scores, noise model, decisions
    t = time.perf_counter()
    aul_s, aum_s = aul(dyn.loss), aum(dyn.margin)
    limit_s = None if dyn.limit_distance is None else dyn.limit_distance.astype(np.float64)
    raw = {"aul": aul_s, "aum": aum_s, "limit": limit_s}
    score = fuse(config.fusion, {name: raw[name] for name in scorers})
    fit = fit_noise(config.noise_model, aul_scores=aul_s, aum_scores=aum_s, random_state=config.seed,
                    given=np.asarray(ds.labels))
    runs = None
    if config.proxy_runs > 1:
        t_runs = time.perf_counter()
        fit, runs = _more_proxy_runs(fit, int(dyn.loss.shape[0]), config, settings, images, labels, ds, device,
                                     progress, checkpoint_of)
        timings["more_runs_s"] = time.perf_counter() - t_runs
    p_audit, audit_flags = decide(fit.p_mislabeled, config.threshold)  # the unsupervised audit's own
    fit, calibration, not_calibrated = _calibrated(config, trust, fit)
    samples = build_samples(ds, aul_s=aul_s, aum_s=aum_s, score=score, fit=fit,
                            mean_probs=dyn.mean_probs if dyn.pseudo_probs is None else dyn.pseudo_probs,
                            threshold=config.threshold, limit_s=limit_s)
    if trust is not None:
        samples = _apply_verified(samples, trust, ds.classes)
    p = samples["p_mislabeled"].to_numpy()
    noise = noise_table(p, ds.labels, ds.classes)
    joint = count_joint(p, ds.labels, dyn.mean_probs)
    t_matrix, t_source = estimate_transition(config.transition, p_mislabeled=p, given=ds.labels,
                                             probs=dyn.mean_probs, quantile=config.anchor_quantile, joint=joint)
    trusted_info = None
    if trust is not None:
        t_audit, t_calibrated = t_matrix, None
        if config.transition == "counts":  # the unsupervised audit's T, and the one from the corrected posteriors
            t_calibrated = t_matrix
            if trust.inside.any():  # else no posterior moved (nothing to calibrate on or verify): the same T
                t_audit = estimate_transition("counts", p_mislabeled=p_audit, given=ds.labels,
                                              probs=dyn.mean_probs)[0]
        t_matrix, transition, trusted_info = _with_trusted(config, trust, ds, audit_flags, t_audit, t_calibrated)
        trusted_info["calibration"] = calibration.as_dict() if calibration else {"skipped": not_calibrated}
    else:
        transition = transition_frame(t_matrix, ds.classes)
    noise["transition_rate"] = _transition_rates(t_matrix, joint, ds)
    trajectories = trajectories_frame(dyn.loss, dyn.margin, dyn.limit_epochs)
    timings["score_s"] = time.perf_counter() - t - timings.get("more_runs_s", 0.0)

    run = {
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
                 "fingerprint": fingerprint, **ds.stats},
        "noise_model": {"method": fit.method, **fit.details,
                        "interval": _interval_info(calibration, runs)},
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
    result = ScanResult(samples, noise, trajectories, ds.errors, run, ds.classes, transition,
                        out=Path(out) if out is not None else None)
    if result.out is not None:
        report = None
        if config.report:
            from .report import render_report

            t = time.perf_counter()
            report = render_report(result.audit(), top=config.report_top)
            timings["report_s"] = time.perf_counter() - t
        write_audit(result.out, samples=samples, noise=noise, trajectories=trajectories, errors=ds.errors, run=run,
                    transition=transition, report_html=report,
                    drop=checkpoint_files(result.out))
    return result
