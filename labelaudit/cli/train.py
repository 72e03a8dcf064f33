"""``labelaudit train``: the Typer signature and help; the work is :func:`labelaudit.robust.train`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from ..errors import UsageError
from ..robust import METRICS_JSON, TrainConfig, train
from ..training.distributed import env_rank
from ._errors import handle_errors
from ._options import CONFIG, TRUSTED
from ._settings import merged
from .progress import command_progress

def train_cli(
    ctx: typer.Context,
    data: Optional[Path] = typer.Argument(None, help="Training data: image folder or manifest (as in scan).",
                                          show_default=False),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Training manifest (path, label)."),
    root: Optional[Path] = typer.Option(None, help="Folder the manifest's relative paths resolve against."),
    audit: Optional[Path] = typer.Option(None, "--audit", "-a", help="Audit folder of a scan of this data "
                                                                    "(needed by --weights, --drop-issues, "
                                                                    "--relabel and --correction)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="Held-out images with clean labels (folder or "
                                                                  "manifest), evaluated every epoch."),
    trusted: Optional[Path] = TRUSTED,
    out: Path = typer.Option(Path("labelaudit-model"), "--out", "-o", help="Model folder to write."),
    config: List[str] = CONFIG,
    baseline: Optional[Path] = typer.Option(None, help="A plain run's model folder: print the accuracy gain "
                                                       "over it at the end."),
    weights: bool = typer.Option(False, "--weights", help="Weight each sample by the audit's clean probability."),
    drop_issues: bool = typer.Option(False, "--drop-issues", help="Leave out the samples the audit flagged."),
    relabel: bool = typer.Option(False, "--relabel", help="Train flagged samples on the audit's predicted label."),
    correction: Optional[str] = typer.Option(None, help="Loss correction with the audit's T: none, forward or "
                                                        "backward \\[default: none]."),
    model: Optional[str] = typer.Option(None, help="Network: tiny, small, medium, resnet18 or any torchvision "
                                                   "classification model \\[default: small]."),
    pretrained: Optional[str] = typer.Option(None, help="Start from weights: a torchvision weights name of --model "
                                                        "(DEFAULT, IMAGENET1K_V1, ...) or a state-dict file."),
    freeze: bool = typer.Option(False, "--freeze", help="Train only a linear head on the --pretrained backbone's "
                                                        "embeddings (computed once, cached)."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs \\[default: 40]."),
    batch_size: Optional[int] = typer.Option(None, help="Batch size; lower it when the GPU runs out of memory "
                                                        "\\[default: 128]."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N \\[default: auto]."),
    seed: Optional[int] = typer.Option(None, help="Random seed \\[default: 0]."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from the checkpoint its last "
                                                        "finished epoch left in --out (same settings)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    r"""Train a fresh model that the label noise hurts less, using an audit: per-sample weights,
    dropping or relabelling flagged samples, loss correction with the transition matrix. Writes
    model.pt (a state_dict), model.json and metrics.json.

    Stochastic label noise, a momentum model, label correction and IEG's meta step with --trusted are advanced settings: --config, \[tool.labelaudit.train] in pyproject.toml, or --<setting> VALUE (`labelaudit settings train` lists them)."""
    err = Console(stderr=True)
    with handle_errors(resumable=True):
        settings = merged(ctx, TrainConfig, config, dict(
            weights=weights or None, drop_issues=drop_issues or None, relabel=relabel or None, correction=correction,
            model=model, pretrained=pretrained, freeze=freeze or None, epochs=epochs, batch_size=batch_size, device=device, seed=seed, resume=resume or None),
            section="train")
        base = _baseline_accuracy(baseline) if baseline is not None else None
        with command_progress(err, enabled=not quiet) as progress:
            result = train(data, audit=audit, out=out, eval_data=eval_data, manifest=manifest, root=root,
                           trusted=trusted, config=settings, progress=progress)
    if quiet or env_rank() != 0:  # under torchrun only rank 0 prints the summary
        return
    console = Console()
    m = result.metrics
    console.print(f"[bold]Methods:[/bold] {', '.join(m['methods'])}   trained on {m['data']['n_trained']:,} "
                  f"of {m['data']['n_samples']:,} samples")
    if m.get("backbone"):
        b = m["backbone"]
        console.print(f"[bold]Backbone:[/bold] {b['model']} from {b['weights']}, "
                      + (f"frozen (a linear head on its {b['embedding_dim']}-d embeddings, {b['embeddings']})"
                         if b.get("frozen") else "fine-tuned"))
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
