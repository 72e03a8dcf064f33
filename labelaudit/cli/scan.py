"""``labelaudit scan``: the Typer signature and help; the work is :func:`labelaudit.pipeline.scan`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..pipeline import ScanConfig, scan
from ._errors import handle_errors
from ._options import ALLOW_OUTSIDE_ROOT, TRUSTED
from .progress import RichProgress
from .summary import render_scan_summary

_D = ScanConfig()


def _spelled_default(flag: str):
    """A hidden flag that spells out a default (``--cache``, ``--report``, ...), so scripts that write it
    still run. Each switch shows one flag, the one that changes something: an on/off pair puts its
    second name in a column of its own, which squeezed every help line of this command into 19
    characters in an 80-column terminal."""
    return typer.Option(False, flag, hidden=True, help="The default, spelled out.")


def scan_cli(
    data: Optional[Path] = typer.Argument(None, help="Image folder (one subfolder per class), or a manifest file.",
                                          show_default=False),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m",
                                            help="CSV/TSV/Parquet/JSONL manifest with path and label columns."),
    root: Optional[Path] = typer.Option(None, help="Folder the manifest's relative paths resolve against "
                                                   "\\[default: the manifest's folder]."),
    out: Path = typer.Option(Path("labelaudit-out"), "--out", "-o", help="Output folder for the audit."),
    path_column: str = typer.Option(_D.path_column, help="Manifest column holding image paths."),
    label_column: str = typer.Option(_D.label_column, help="Manifest column holding labels."),
    dedupe: bool = typer.Option(False, "--dedupe", help="Manifest: keep the first row of a file listed twice "
                                                        "(others go to errors.parquet) instead of stopping."),
    allow_outside_root: bool = ALLOW_OUTSIDE_ROOT,
    max_errors: Optional[str] = typer.Option(None, help="Abort when more files than this cannot be used: a "
                                                        "count (20) or a share (5%) \\[default: no limit]."),
    image_size: int = typer.Option(_D.image_size, help="Side in px of the square images the proxy sees."),
    workers: int = typer.Option(_D.workers, help="Decode processes; 0 = one per core (max 8)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Decoded-image cache \\[default: $LABELAUDIT_CACHE "
                                                        "or ~/.cache/labelaudit]."),
    no_cache: bool = typer.Option(not _D.cache, "--no-cache", help="Decode every image again instead of reusing "
                                                                   "the decoded-image cache."),
    _cache: bool = _spelled_default("--cache"),
    model: str = typer.Option(_D.model, help="Proxy network: small, medium or resnet18."),
    epochs: str = typer.Option(_D.epochs, help="Proxy training epochs: auto (15 to 30, stopping when the proxy "
                               "starts to memorise the noisy labels) or a number (exactly that many)."),
    batch_size: int = typer.Option(_D.batch_size, help="Proxy batch size."),
    lr: float = typer.Option(_D.lr, help="Constant SGD learning rate."),
    augment: str = typer.Option(_D.augment, help="crop+flip, crop (for digits, text, symbols) or none."),
    device: str = typer.Option(_D.device, help="auto, cpu, cuda or cuda:N."),
    compile: bool = typer.Option(_D.compile, "--compile", help="torch.compile the proxy network "
                                                                 "(pays off on long GPU runs)."),
    _no_compile: bool = _spelled_default("--no-compile"),
    seed: int = typer.Option(_D.seed, help="Random seed; same seed, device and data give the same outputs."),
    proxy_runs: int = typer.Option(_D.proxy_runs, help="Train this many proxies (seeds --seed, --seed + 1, ...) "
                                   "and widen the noise rate's interval by how much their estimates differ; "
                                   "the outputs stay the first run's. Costs K trainings (docs/scores.md)."),
    scores: str = typer.Option(_D.scores, "--scores", "--score",
                               help="Scores fused into the ranking: a comma list of aul, aum, limit (limit trains "
                                    "two more networks; see docs/scores.md). --score aul ranks by AUL alone."),
    fusion: str = typer.Option(_D.fusion, help="How several scores are fused: z-mean, rank-mean or posterior-mean."),
    limit_dist: str = typer.Option(_D.limit_dist, help="LIMIT's gradient predictor: gaussian (MSE) or laplace (MAE)."),
    limit_beta: float = typer.Option(_D.limit_beta, help="LIMIT's penalty on the predicted gradient's norm (β)."),
    limit_model: str = typer.Option(_D.limit_model, help="LIMIT's two networks: tiny, small, medium or resnet18."),
    limit_average_epochs: float = typer.Option(_D.limit_average_epochs,
                                               help="LIMIT scores with a moving average of q over about this many "
                                                    "last epochs; 0 = q's last weights."),
    noise_model: str = typer.Option(_D.noise_model, help="margin (default) or aul-gmm (the AUL paper's mixture)."),
    threshold: float = typer.Option(_D.threshold, help="Flag a sample when p(mislabeled) exceeds this."),
    transition: str = typer.Option(_D.transition, help="Transition-matrix estimator: counts (from the audit) "
                                                       "or anchors (Patrini's anchor points)."),
    anchor_quantile: float = typer.Option(_D.anchor_quantile, help="anchors: quantile of p(label = i | x) that "
                                                                   "picks class i's anchor; 1.0 = argmax."),
    trusted: Optional[Path] = TRUSTED,
    no_trusted_calibration: bool = typer.Option(not _D.trusted_calibration, "--no-trusted-calibration",
                                                help="--trusted: keep the unsupervised p(mislabeled), noise rates "
                                                     "and T instead of recalibrating them on the verified samples "
                                                     "that are in the data (docs/trusted.md)."),
    _trusted_calibration: bool = _spelled_default("--trusted-calibration"),
    pseudo_labels: str = typer.Option(_D.pseudo_labels, help="predicted_label from: mean (softmax averaged over "
                                                              "the proxy's epochs) or augment (IEG: mean over "
                                                              "--pseudo-k views, sharpened with τ = 0.5)."),
    pseudo_k: int = typer.Option(_D.pseudo_k, help="--pseudo-labels augment: views averaged (the image and "
                                                   "K − 1 augmentations)."),
    no_report: bool = typer.Option(not _D.report, "--no-report", help="Do not write report.html."),
    _report: bool = _spelled_default("--report"),
    report_top: int = typer.Option(_D.report_top, help="Suspects shown as thumbnails in report.html."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted scan from the checkpoint its "
                                                        "last finished epoch left in --out (same options)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as one JSON object."),
) -> None:
    """Audit the labels of an image dataset: train a small proxy network, score every sample, estimate
    the noise rate, and write ranked suspects, noise estimates and weights to the output folder."""
    config = ScanConfig(image_size=image_size, workers=workers, cache=not no_cache,
                        cache_dir=str(cache_dir) if cache_dir else None, model=model, epochs=epochs,
                        batch_size=batch_size, lr=lr, augment=augment, device=device, seed=seed, scores=scores,
                        compile=compile, proxy_runs=proxy_runs,
                        fusion=fusion, limit_dist=limit_dist, limit_beta=limit_beta,
                        limit_model=limit_model, limit_average_epochs=limit_average_epochs,
                        noise_model=noise_model, threshold=threshold, transition=transition,
                        anchor_quantile=anchor_quantile, report=not no_report, report_top=report_top,
                        path_column=path_column, label_column=label_column, max_errors=max_errors,
                        dedupe=dedupe, allow_outside_root=allow_outside_root, resume=resume,
                        trusted=str(trusted) if trusted else None,
                        trusted_calibration=not no_trusted_calibration, pseudo_labels=pseudo_labels, pseudo_k=pseudo_k)
    err = Console(stderr=True)
    with handle_errors():
        with RichProgress(err, enabled=not quiet and not as_json) as progress:
            result = scan(data, out=out, manifest=manifest, root=root, config=config, progress=progress)
    if as_json:
        typer.echo(json.dumps({**result.summary, "out": str(out), "noise_model": result.run["noise_model"]["method"]}))
    elif not quiet:
        render_scan_summary(Console(), result)
