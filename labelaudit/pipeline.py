"""The scan: sources → decode/cache → proxy training → scores → noise model → decisions → the audit.

``scan()`` is the Python API and the body of ``labelaudit scan``; it reads top to bottom as the
stages in order, each a call into its subpackage. The CLI only parses options, shows progress and
prints. Settings live in one frozen dataclass, :class:`~labelaudit.config.ScanConfig`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .audit.read import Audit
from .audit.record import run_record
from .audit.write import Trajectories, write_audit, write_parquet
from .config import ScanConfig, parse_epochs
from .data.cache import array_digest, cache_dir_for
from .data.dataset import Dataset, check_max_errors, fingerprint
from .data.decode import default_workers
from .data.sources import list_data
from .data.trusted import TrustedSet, load_trusted
from .decisions import apply_verified, build_samples, decide
from .dynamics.limit import LimitSettings
from .dynamics.proxy import ProxySettings, held_out_probs, train_proxy
from .dynamics.recorders import Dynamics
from .errors import DataError, UsageError
from .noise.calibration import calibrated, with_trusted
from .noise.interval import settle_rate, settle_undecided, stated_interval
from .noise.outliers import with_outliers
from .noise.sampling import answers_needed, strata
from .noise.mixture import BOOTSTRAP_LEVEL, NoiseFit, early_agreement, fit_noise, noise_table, percentile_interval
from .noise.stopping import memorisation_check
from .noise.transition import count_joint, estimate_transition, transition_frame, transition_rates
from .progress import Progress, as_stage
from .report import render_report
from .scores import aul, aum, fuse, knn_disagreement
from .training.checkpoint import Checkpointer, checkpoint_files, checkpoint_key, run_checkpoint_file
from .training.backbones import Pretrained, resolve_weights
from .training.device import resolve_device
from .training.models import DEFAULT_IMAGE_SIZE
from .training.distributed import World, barrier, decode_shared, join
from .training.embeddings import Standardise, backbone_embeddings, describe_backbone, linear_head
from .training.loop import Normalise, device_images, device_labels, device_model


@dataclass
class ScanResult(Audit):
    """A scan's audit (the tables of its folder, run.json as a dict), plus the per-epoch trajectories
    it holds in memory. ``path`` (also ``out``) is the folder, None when nothing was written."""

    records: Trajectories | None = None  # the per-epoch records, as the recorders held them
    classes: list[str] = field(default_factory=list)

    @property
    def trajectories(self) -> pd.DataFrame | None:
        """trajectories.parquet's long table (sample_id, epoch, loss, margin[, limit_distance]),
        built when asked."""
        return None if self.records is None else self.records.frame()

    @property
    def out(self) -> Path | None:
        return self.path

    def early_agreement(self) -> np.ndarray | None:
        """(N,) each sample's early agreement, from the records in memory (the folder's otherwise)."""
        if self.records is None:
            return None if self.path is None else super().early_agreement()
        return early_agreement(self.records.margin)


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
    config = ScanConfig.build(config, **options)
    pretrained = resolve_weights(config.model, config.weights)  # a bad file or name stops the scan at once
    if config.image_size is None:  # the weights' own input size, else the default
        config = dataclasses.replace(config, image_size=pretrained.image_size if pretrained is not None and
                                     pretrained.image_size else DEFAULT_IMAGE_SIZE)
    world = join(config.device)  # several processes under torchrun: one process group (distributed.py)
    device = resolve_device(config.device)  # under torchrun: this process's own GPU
    if out is None and config.resume:
        raise UsageError("--resume needs an output folder: the checkpoint lives there")
    workers = config.workers or default_workers()
    cache_dir = cache_dir_for(config.cache, config.cache_dir)
    clock = _Clock()

    # --- 1-2. sources, decode + cache (and the trusted set, so a bad file stops the scan at once)
    with clock("list_s"):
        listing = list_data(data, manifest, root, path_column=config.path_column, label_column=config.label_column,
                            dedupe=config.dedupe, allow_outside_root=config.allow_outside_root)
    with clock("load_s"):
        ds = _load(listing, config, workers, cache_dir, out, progress, world)
        trust = None if config.trusted is None else load_trusted(
            config.trusted, classes=ds.classes, data_files=ds.files, data_labels=ds.labels,
            image_size=config.image_size, workers=workers, cache_dir=cache_dir,
            allow_outside_root=config.allow_outside_root)

    # --- 3. proxy training, recording every sample's loss and margin every epoch
    with clock("train_s"):
        proxy = _train_proxy(ds, config, device, out, progress, world, pretrained, cache_dir, clock)
    dyn = proxy.dyn

    with clock("score_s"):
        # --- 4. scores (higher `score` = more likely mislabeled)
        aul_s, aum_s = aul(dyn.loss), aum(dyn.margin)
        limit_s = None if dyn.limit_distance is None else dyn.limit_distance.astype(np.float64)
        # the pretrained backbone's embeddings (--weights, frozen or not) give the neighbourhood score
        knn_s = None if proxy.embeddings is None else knn_disagreement(proxy.embeddings, ds.labels)
        raw = {"aul": aul_s, "aum": aum_s, "limit": limit_s, "knn": knn_s}
        score = fuse(config.fusion, {name: raw[name] for name in proxy.scorers})

        # --- 5. noise model: p(mislabeled), the rate and its interval (more proxy runs widen it)
        fit = fit_noise(config.noise_model, aul_scores=aul_s, aum_scores=aum_s, random_state=config.seed,
                        given=np.asarray(ds.labels), early=early_agreement(dyn.margin))
        settled, predicted = None, dyn.mean_probs.argmax(axis=1)
        fit, head_rate, trajectory = settle_rate(fit, config.noise_model, proxy.readings, dyn.loss, dyn.margin,
                                                 predicted, np.asarray(ds.labels), len(ds.classes),
                                                 random_state=config.seed)
        runs = None
        if config.proxy_runs > 1:
            with clock("more_runs_s", inside="score_s"):
                fit, runs = _more_proxy_runs(fit, proxy, config, ds, progress)
        if head_rate is None and not (trajectory or {}).get("used"):
            fit, settled = settle_undecided(fit, predicted, np.asarray(ds.labels))
        fit, outliers = with_outliers(fit, score, config.threshold, config.fdr)
        p_audit, audit_flags = decide(fit.p_mislabeled, config.threshold)  # the unsupervised audit's own
        fit, stated = stated_interval(fit, predicted, np.asarray(ds.labels))
        fit, calibration, not_calibrated = calibrated(fit, trust, enabled=config.trusted_calibration)

        # --- 6. decisions: flags, ranks, weights, suggested labels
        samples = build_samples(ds, aul_s=aul_s, aum_s=aum_s, score=score, fit=fit,
                                mean_probs=dyn.mean_probs if dyn.pseudo_probs is None else dyn.pseudo_probs,
                                threshold=config.threshold, limit_s=limit_s, knn_s=knn_s)
        if trust is not None:
            rows, verified, _ = trust.verified_rows()
            samples = apply_verified(samples, rows, np.asarray(ds.classes, dtype=object)[verified])

        # --- 5b. rates per class and the transition matrix, from the final posteriors
        p = samples["p_mislabeled"].to_numpy()
        noise = noise_table(p, ds.labels, ds.classes)
        t_matrix, transition, t_source, trusted_info, joint = _transition(config, ds, dyn, p, p_audit, audit_flags,
                                                                         trust)
        if trusted_info is not None:
            trusted_info["calibration"] = calibration.as_dict() if calibration else {"skipped": not_calibrated}
        noise["transition_rate"] = transition_rates(t_matrix, joint, ds.labels)
        trajectories = Trajectories(dyn.loss, dyn.margin, dyn.limit_epochs)

    # --- 7. the audit: run.json, the tables, report.html, written atomically
    run = run_record(config=config, workers=workers, cache_dir=cache_dir, device=device,
                     timings=dict(clock.timings), dyn=dyn, listing=listing, ds=ds, listing_fingerprint=proxy.fingerprint,
                     fit=fit, calibration=calibration, runs=runs, scorers=proxy.scorers, limit=proxy.limit,
                     t_source=t_source, trusted_info=trusted_info, samples=samples, t_matrix=t_matrix,
                     stated=stated, outliers=outliers, settled=settled, head_rate=head_rate, trajectory=trajectory, world=world.as_dict(), backbone=proxy.backbone, answers_for_2_points=answers_needed(
                         strata(samples["rank"].to_numpy(), samples["p_mislabeled"].to_numpy(),
                                samples["is_label_issue"].to_numpy(dtype=bool))))
    result = ScanResult(Path(out) if out is not None else None, samples, noise, run, ds.errors, transition,
                        records=trajectories, classes=ds.classes)
    if result.out is not None and world.main:  # every rank holds the same audit; rank 0 writes it
        report = None
        if config.report:
            with clock("report_s"):
                report = render_report(result, top=config.report_top)
            result.run = run = dataclasses.replace(run, timings=dict(clock.timings))
        write_audit(result.out, samples=samples, noise=noise, trajectories=trajectories, errors=ds.errors, run=run,
                    transition=transition, report_html=report, drop=checkpoint_files(result.out))
    barrier(world)  # the audit folder is complete when scan returns on any rank
    return result


class _Clock:
    """Wall time per stage for run.json's ``timings``: ``with clock("train_s"): ...``. A stage timed
    ``inside`` another is taken off that one's time (the extra proxy runs are not scoring)."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self._nested: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, key: str, inside: str | None = None):
        t = time.perf_counter()
        yield
        took = time.perf_counter() - t
        self.timings[key] = took - self._nested.pop(key, 0.0)
        if inside is not None:
            self._nested[inside] = self._nested.get(inside, 0.0) + took


def _load(listing, config: ScanConfig, workers: int, cache_dir, out, progress: Progress | None,
          world: World = World()) -> Dataset:
    """Decode the listing through the cache; on too many unreadable files, errors.parquet is written
    to ``out`` (never over an older audit) before the DataError goes up. Under torchrun with a cache
    the ranks split the decoding (distributed.decode_shared); without a cache every rank decodes for
    itself."""
    try:  # under torchrun every rank decodes its share into the cache first (distributed.decode_shared)
        ds = decode_shared(listing, image_size=config.image_size, workers=workers, cache_dir=cache_dir,
                           progress=progress, world=world)
        check_max_errors(config.max_errors, ds.errors, ds.stats["n_listed"])
    except DataError as exc:
        if (world.main and out is not None and exc.errors is not None
                and not (Path(out) / "run.json").exists()):
            Path(out).mkdir(parents=True, exist_ok=True)  # reasons for the user, never over an older audit
            write_parquet(exc.errors, Path(out) / "errors.parquet")
        raise
    return ds


@dataclass
class _Proxy:
    """The first proxy run and what the extra runs (``proxy_runs``) reuse."""

    dyn: Dynamics
    settings: ProxySettings
    scorers: tuple[str, ...]
    limit: LimitSettings | None
    images: torch.Tensor  # the proxy's input on the device: (N, 3, S, S) uint8, or --freeze's (N, D) embeddings
    labels: torch.Tensor  # (N,) int64 on the device
    fingerprint: str
    checkpoint_of: Callable[..., Checkpointer | None]
    pretrained: Pretrained | None = None
    head: Callable[[], torch.nn.Module] | None = None  # --freeze: builds a fresh head
    normalise: Callable | None = None  # --freeze: the embeddings' standardisation
    backbone: dict | None = None  # run.json's backbone block
    embeddings: np.ndarray | None = None  # (N, D) the pretrained backbone's: with --freeze, or knn among the scores
    readings: tuple[np.ndarray, np.ndarray] | None = None  # with embeddings: the rate's heads' (own, held-out) probabilities

    @functools.cached_property
    def rate_heads(self) -> tuple[torch.Tensor, Callable[[], torch.nn.Module], Callable, ProxySettings]:
        """The rate's heads' input, builder, standardisation and settings: with --freeze the audit's
        own head's; fine-tuning, a linear head's on the embeddings taken before it (on the device once)."""
        if self.settings.frozen:
            return self.images, self.head, self.normalise, self.settings
        features = torch.from_numpy(self.embeddings).to(self.labels.device)
        k, device = int(self.dyn.mean_probs.shape[1]), self.labels.device
        settings = dataclasses.replace(self.settings, frozen=True, augment="none", lr=ProxySettings.lr)
        return features, (lambda: linear_head(features.shape[1], k, device)), Standardise(features), settings

    def head_readings(self, seed: int, own: np.ndarray | None = None,
                      progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(own, held-out) probabilities of linear heads on the pretrained embeddings, trained with
        ``seed`` (noise/confident.py reads the rate from them); ``own`` when the audit's head gave
        them (--freeze). None without embeddings."""
        if self.embeddings is None:
            return None
        features, network, normalise, settings = self.rate_heads
        settings = dataclasses.replace(settings, seed=seed)
        k, device = int(self.dyn.mean_probs.shape[1]), self.labels.device
        if own is None:
            own = train_proxy(features, self.labels, k, settings, device=device, network=network, normalise=normalise,
                              stop_rule=memorisation_check, progress=as_stage(progress, "rate head")).mean_probs
        held = held_out_probs(features, self.labels, k, settings, device=device, network=network, normalise=normalise,
                              stop_rule=memorisation_check, progress=progress)
        return own, held


def _train_proxy(ds: Dataset, config: ScanConfig, device, out, progress: Progress | None,
                 world: World = World(), pretrained: Pretrained | None = None, cache_dir=None,
                 clock: "_Clock | None" = None) -> _Proxy:
    """Stage 3: the proxy, with LIMIT's pair when its score runs, checkpointed every epoch into ``out``;
    with ``--freeze`` a linear head on the backbone's cached embeddings (training/embeddings.py)."""
    images = device_images(ds.images, device)  # (N, 3, S, S) uint8
    labels = device_labels(ds.labels, device)
    max_epochs, stop_from = parse_epochs(config.epochs)
    settings = ProxySettings(model=config.model, weights=config.weights, epochs=max_epochs, stop_from=stop_from,
                             batch_size=config.batch_size, lr=config.learning_rate,
                             augment="none" if config.freeze else config.augment, seed=config.seed,
                             compile=config.compile, frozen=config.freeze)
    pixels = array_digest(ds.images)
    scorers = config.scorers
    embeddings = info = None
    if config.freeze or "knn" in scorers:  # either needs --weights (ScanConfig.validate)
        # the backbone as its weights left it: the frozen head's input, and the neighbourhood score's space
        # (before fine-tuning, so the noisy labels have not shaped it)
        with (clock("embed_s", inside="train_s") if clock is not None else contextlib.nullcontext()):
            net = device_model(config.model, len(ds.classes), device, pretrained)
            embeddings, info = backbone_embeddings(net, config.model, pretrained, images, pixels,
                                                   Normalise.for_network(images, pretrained, device), cache_dir,
                                                   config.batch_size, progress)
            del net  # the training builds its own; a large backbone would hold device memory all along
    if config.freeze:
        images = torch.from_numpy(embeddings).to(device)  # the head's input: (N, D) float32
    limit = config.limit_settings() if "limit" in scorers else None
    listed = fingerprint(ds.samples)
    data_key = dict(device=device.type, world_size=world.size, image_size=config.image_size, classes=ds.classes,
                    listing=listed, pixels=pixels)

    def checkpoint_of(run: int, run_settings: ProxySettings, run_limit: LimitSettings | None = None
                      ) -> Checkpointer | None:
        """Run ``run``'s (1 = the audit's own) per-epoch checkpoint in ``out``, resumed only on the very
        same settings, listing and pixels; None without an output folder."""
        if out is None:
            return None
        key = checkpoint_key(settings=dataclasses.asdict(run_settings),
                             limit=run_limit and dataclasses.asdict(run_limit), **data_key)
        return Checkpointer(Path(out) / run_checkpoint_file(run), key, resume=config.resume)

    head = normalise = None
    if config.freeze:
        dim, k = images.shape[1], len(ds.classes)
        head, normalise = (lambda: linear_head(dim, k, device)), Standardise(images)
    dyn = train_proxy(images, labels, len(ds.classes), settings, device=device, progress=progress, limit=limit,
                      checkpoint=checkpoint_of(1, settings, limit), stop_rule=memorisation_check,
                      pseudo_k=config.pseudo_k if config.pseudo_labels == "augment" else 0, pretrained=pretrained,
                      network=head, normalise=normalise)
    backbone = None if pretrained is None else {**describe_backbone(config.model, pretrained, config.freeze),
                                                **(info or {})}
    proxy = _Proxy(dyn, settings, scorers, limit, images, labels, listed, checkpoint_of, pretrained, head, normalise,
                   backbone, embeddings)
    # the rate's readings (noise/confident.py): the frozen head's own, or one more head's when fine-tuning
    with (clock("rate_heads_s", inside="train_s") if clock is not None else contextlib.nullcontext()):
        proxy.readings = proxy.head_readings(config.seed, dyn.mean_probs if config.freeze else None, progress)
    return proxy


def _more_proxy_runs(fit: NoiseFit, proxy: _Proxy, config: ScanConfig, ds: Dataset,
                     progress: Progress | None) -> tuple[NoiseFit, dict]:
    """``--proxy-runs K``: train K − 1 more proxies with seeds seed+1 … seed+K−1 on the same data and
    settings, fit the same noise model to each and settle its rate as the first run's (with embeddings,
    the confident joint of heads trained with the run's seed; from scratch, of its last epochs), and pool
    every run's bootstrap rounds into the interval. The scan's outputs stay those of the first run
    (``--seed``); only the interval (and run.json's ``runs``) changes. The interval then holds two
    sources of noise in the estimate: the draw of the samples (the bootstrap) and the proxy's own
    randomness (its start, batch order and augmentations, which a re-scan after any change in the data
    draws anew). Each run keeps its own per-epoch checkpoint (``proxy.checkpoint_of(run, settings)``),
    so ``--resume`` goes on from the run and epoch an interruption left. Returns (the fit with the
    pooled interval; the runs' seeds, epochs, rates and the epochs each run resumed from)."""
    settings = proxy.settings
    given = np.asarray(ds.labels)
    seeds, epochs, rates = [settings.seed], [int(proxy.dyn.loss.shape[0])], [fit.noise_rate]
    draws, resumed = [fit.draws], []
    for r in range(1, config.proxy_runs):
        run_settings = dataclasses.replace(settings, seed=settings.seed + r)
        more = train_proxy(proxy.images, proxy.labels, len(ds.classes), run_settings, device=proxy.labels.device,
                           network=proxy.head, normalise=proxy.normalise,
                           checkpoint=proxy.checkpoint_of(r + 1, run_settings), stop_rule=memorisation_check,
                           pretrained=proxy.pretrained,
                           progress=as_stage(progress, f"train run {r + 1}/{config.proxy_runs}"))
        resumed.append(more.resumed_from_epoch)
        seed = run_settings.seed  # every estimate below = what scan --seed seed+r makes
        other = fit_noise(config.noise_model, aul_scores=aul(more.loss), aum_scores=aum(more.margin), random_state=seed,
                          given=given, early=early_agreement(more.margin))
        other = settle_rate(other, config.noise_model, proxy.head_readings(seed, more.mean_probs if config.freeze else None),
                            more.loss, more.margin, more.mean_probs.argmax(axis=1), given, len(ds.classes),
                            random_state=seed)[0]
        seeds.append(seed)
        epochs.append(int(more.loss.shape[0]))
        rates.append(other.noise_rate)
        draws.append(other.draws)
    # a fit with no bootstrap (too few samples): the runs' own spread
    pooled = np.asarray(rates, dtype=np.float64) if any(d is None for d in draws) else np.concatenate(draws)
    interval = percentile_interval(pooled, BOOTSTRAP_LEVEL)
    runs = {"seeds": seeds, "epochs_run": epochs, "noise_rates": rates, "resumed_from_epoch": resumed}
    return dataclasses.replace(fit, interval=interval, draws=pooled), runs


def _transition(config: ScanConfig, ds: Dataset, dyn: Dynamics, p: np.ndarray, p_audit: np.ndarray,
                audit_flags: np.ndarray, trust: TrustedSet | None):
    """Stage 5b: T from the final posteriors (and, with a trusted set, combined with the verified
    pairs). Returns (T (K, K), transition.parquet's frame, where T came from, run.json's trusted block
    or None, the count joint (K, K))."""
    joint = count_joint(p, ds.labels, dyn.mean_probs)
    t_matrix, t_source = estimate_transition(config.transition, p_mislabeled=p, given=ds.labels,
                                             probs=dyn.mean_probs, quantile=config.anchor_quantile, joint=joint)
    if trust is None:
        return t_matrix, transition_frame(t_matrix, ds.classes), t_source, None, joint
    t_audit, t_calibrated = t_matrix, None
    if config.transition == "counts":  # the unsupervised audit's T, and the one from the corrected posteriors
        t_calibrated = t_matrix
        if trust.inside.any():  # else no posterior moved (nothing to calibrate on or verify): the same T
            t_audit = estimate_transition("counts", p_mislabeled=p_audit, given=ds.labels, probs=dyn.mean_probs)[0]
    t_matrix, transition, trusted_info = with_trusted(trust, ds.classes, audit_flags, t_audit, t_calibrated)
    return t_matrix, transition, t_source, trusted_info, joint
