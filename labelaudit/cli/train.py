"""``labelaudit train``: the Typer signature and help; the work is :func:`labelaudit.train.train`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..errors import UsageError
from ..train import METRICS_JSON, TrainConfig, train
from ._errors import handle_errors
from ._options import ALLOW_OUTSIDE_ROOT, TRUSTED
from .progress import RichProgress

_D = TrainConfig()


def train_cli(
    data: Optional[Path] = typer.Argument(None, help="Training data: image folder or manifest (as in scan).",
                                          show_default=False),
    audit: Optional[Path] = typer.Option(None, "--audit", "-a", help="Audit folder of a scan of this data "
                                                                    "(needed by --weights, --drop-issues, "
                                                                    "--relabel and --correction)."),
    out: Path = typer.Option(Path("labelaudit-model"), "--out", "-o", help="Model folder to write."),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="Held-out images with clean labels (folder or "
                                                                  "manifest), evaluated every epoch."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Training manifest (path, label)."),
    root: Optional[Path] = typer.Option(None, help="Folder the manifest's relative paths resolve against."),
    allow_outside_root: bool = ALLOW_OUTSIDE_ROOT,
    baseline: Optional[Path] = typer.Option(None, help="A plain run's model folder: print the accuracy gain "
                                                       "over it at the end."),
    weights: bool = typer.Option(False, "--weights", help="Weight each sample by the audit's clean probability."),
    drop_issues: bool = typer.Option(False, "--drop-issues", help="Leave out the samples the audit flagged."),
    relabel: bool = typer.Option(False, "--relabel", help="Train flagged samples on the audit's predicted label."),
    min_confidence: float = typer.Option(_D.min_confidence, help="--relabel: only when the prediction is at least "
                                                                 "this confident."),
    correction: str = typer.Option(_D.correction, help="Loss correction with the audit's T: none, forward or "
                                                       "backward."),
    sln: float = typer.Option(_D.sln, help="Stochastic label noise σ on the one-hot targets (0 = off; the paper "
                                           "uses 0.5–1)."),
    ema: float = typer.Option(_D.ema, help="Momentum (EMA) model decay, e.g. 0.999 (0 = off); the EMA model is "
                                           "evaluated and saved."),
    label_correction: int = typer.Option(_D.label_correction, help="From this epoch on, train on targets corrected "
                                                                   "by the model's predictions (0 = off)."),
    lc_weighting: str = typer.Option(_D.lc_weighting, help="Label correction's weighting: paper or reverse."),
    trusted: Optional[Path] = TRUSTED,
    meta_reweight: bool = typer.Option(False, "--meta-reweight", help="With --trusted: weight each sample every "
                                                                      "step by how much it helps the trusted "
                                                                      "batch (L2R/IEG meta re-weighting); with "
                                                                      "--weights, of the audit-weighted losses."),
    meta_relabel: bool = typer.Option(False, "--meta-relabel", help="With --trusted: every step, train each "
                                                                    "sample on its given or its pseudo label, "
                                                                    "whichever helps the trusted batch (IEG)."),
    pseudo_k: int = typer.Option(_D.pseudo_k, help="--meta-relabel: augmentations averaged into a pseudo label."),
    meta_average: float = typer.Option(_D.meta_average, help="With --meta-reweight/--meta-relabel: weight each "
                                                             "sample by its average meta weight over its visits, "
                                                             "with this decay, e.g. 0.8 (0 = each step's own)."),
    meta_momentum: bool = typer.Option(False, "--meta-momentum", help="With --meta-reweight/--meta-relabel: the "
                                                                      "virtual step follows the optimiser's "
                                                                      "momentum and weight decay (IEG), not "
                                                                      "plain SGD (L2R)."),
    meta_kl: float = typer.Option(_D.meta_kl, help="With --meta-reweight/--meta-relabel: weight k of IEG's "
                                                   "consistency loss between each image and a strongly "
                                                   "augmented copy (0 = off; IEG on CIFAR: 20)."),
    meta_mixup: float = typer.Option(_D.meta_mixup, help="With --meta-reweight/--meta-relabel: weight p of IEG's "
                                                         "mixup of trusted and pseudo-labelled images (0 = off; "
                                                         "IEG on CIFAR: 5)."),
    model: str = typer.Option(_D.model, help="Network: tiny, small, medium or resnet18."),
    epochs: int = typer.Option(_D.epochs, help="Training epochs."),
    batch_size: int = typer.Option(_D.batch_size, help="Batch size."),
    lr: float = typer.Option(_D.lr, help="Peak learning rate of the one-cycle schedule."),
    augment: Optional[str] = typer.Option(None, help="crop+flip, crop or none \\[default: the audit's]."),
    image_size: Optional[int] = typer.Option(None, help="Side in px \\[default: the audit's, else 32]."),
    workers: int = typer.Option(_D.workers, help="Decode processes; 0 = one per core (max 8)."),
    device: str = typer.Option(_D.device, help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(_D.seed, help="Random seed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Train a fresh model that the label noise hurts less, using an audit: per-sample weights,
    dropping or relabelling flagged samples, loss correction with the transition matrix, stochastic
    label noise with a momentum model and label correction. Writes model.pt (a state_dict),
    model.json and metrics.json."""
    config = TrainConfig(image_size=image_size, workers=workers, model=model, epochs=epochs, batch_size=batch_size,
                         lr=lr, augment=augment, device=device, seed=seed, weights=weights, drop_issues=drop_issues,
                         relabel=relabel, min_confidence=min_confidence, correction=correction, sln=sln, ema=ema,
                         label_correction=label_correction, lc_weighting=lc_weighting,
                         allow_outside_root=allow_outside_root, meta_reweight=meta_reweight,
                         meta_relabel=meta_relabel, pseudo_k=pseudo_k, meta_average=meta_average,
                         meta_kl=meta_kl, meta_mixup=meta_mixup, meta_momentum=meta_momentum)
    err = Console(stderr=True)
    with handle_errors():
        base = _baseline_accuracy(baseline) if baseline is not None else None
        with RichProgress(err, enabled=not quiet) as progress:
            result = train(data, audit=audit, out=out, eval_data=eval_data, manifest=manifest, root=root,
                           trusted=trusted, config=config, progress=progress)
    if quiet:
        return
    console = Console()
    m = result.metrics
    console.print(f"[bold]Methods:[/bold] {', '.join(m['methods'])}   trained on {m['data']['n_trained']:,} "
                  f"of {m['data']['n_samples']:,} samples")
    if (m.get("transition") or {}).get("note"):
        console.print(f"[yellow]{m['transition']['note']}[/yellow]")
    if result.final_accuracy is not None:
        console.print(f"[bold]Held-out accuracy:[/bold] final {result.final_accuracy:.2%}, best "
                      f"{m['best']['eval_accuracy']:.2%} (epoch {m['best']['epoch']})")
        if base is not None:
            delta = result.final_accuracy - base
            console.print(f"[bold]vs baseline {baseline}:[/bold] {base:.2%} → {result.final_accuracy:.2%} "
                          f"({delta * 100:+.1f} points)")
    meta = m.get("meta")
    if meta:
        console.print(f"[bold]Meta step:[/bold] last epoch, effective batch {meta['last_epoch_ess']:.0%} of "
                      f"--batch-size, {meta['last_epoch_zero_share']:.0%} of each batch at weight 0; "
                      f"{meta['never_kept']:.1%} of the samples never kept (each sample's meta_weight in "
                      f"{meta['file']})")
    files = ", ".join(["model.pt", "model.json"] + ([meta["file"]] if meta else []) + [METRICS_JSON])
    console.print(f"Wrote {out}/ ({files})")


def _baseline_accuracy(model_dir: Path) -> float:
    path = model_dir / METRICS_JSON
    try:
        acc = json.loads(path.read_text())["final"].get("eval_accuracy")
    except (OSError, ValueError, KeyError):
        raise UsageError(f"--baseline {model_dir}: no readable {METRICS_JSON}; pass the --out of a "
                         "`labelaudit train` run") from None
    if acc is None:
        raise UsageError(f"--baseline {model_dir}: that run had no --eval set, so there is no accuracy to compare")
    return float(acc)
