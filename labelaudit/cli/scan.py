"""``labelaudit scan``: the Typer signature and help; the work is :func:`labelaudit.pipeline.scan`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from ..config import ScanConfig
from ..pipeline import scan
from ..training.distributed import env_rank
from ._errors import handle_errors
from ._options import CONFIG, TRUSTED
from ._settings import merged
from .progress import command_progress
from .summary import render_scan_summary

ALIASES = {"score": "scores"}  # unlisted flags spelled as in earlier releases


def scan_cli(
    ctx: typer.Context,
    data: Optional[Path] = typer.Argument(None, help="Image folder (one subfolder per class), or a manifest file.",
                                          show_default=False),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m",
                                            help="CSV/TSV/Parquet/JSONL manifest with path and label columns."),
    root: Optional[Path] = typer.Option(None, help="Folder the manifest's relative paths resolve against "
                                                   "\\[default: the manifest's folder]."),
    path_column: Optional[str] = typer.Option(None, help="Manifest column holding image paths \\[default: path]."),
    label_column: Optional[str] = typer.Option(None, help="Manifest column holding labels \\[default: label]."),
    out: Path = typer.Option(Path("labelaudit-out"), "--out", "-o", help="Output folder for the audit."),
    config: List[str] = CONFIG,
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N \\[default: auto]."),
    model: Optional[str] = typer.Option(None, help="Proxy network: tiny, small, medium or resnet18, or any "
                                                   "torchvision classification model by name \\[default: small]."),
    image_size: Optional[int] = typer.Option(None, help="Side in px of the square images the proxy sees "
                                                        "\\[default: 32, or the weights' own size]."),
    epochs: Optional[str] = typer.Option(None, help="auto (15 to 30, stopping when the proxy starts to memorise "
                                                    "the noisy labels) or a number \\[default: auto]."),
    batch_size: Optional[int] = typer.Option(None, help="Proxy batch size; lower it when the GPU runs out of "
                                                        "memory \\[default: 128]."),
    seed: Optional[int] = typer.Option(None, help="Random seed; same seed, device and data give the same "
                                                  "outputs \\[default: 0]."),
    trusted: Optional[Path] = TRUSTED,
    threshold: Optional[float] = typer.Option(None, help="Flag a sample when p(mislabeled) exceeds this "
                                                         "\\[default: 0.5]."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted scan from the checkpoint its "
                                                        "last finished epoch left in --out (same settings)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as one JSON object."),
) -> None:
    r"""Audit the labels of an image dataset: train a small proxy network, score every sample, estimate
    the noise rate, and write ranked suspects, noise estimates and weights to the output folder.

    Advanced settings (augmentation, scores, LIMIT, the noise model, proxy runs, caching, ...) come from --config, from \[tool.labelaudit.scan] in pyproject.toml, or as --<setting> VALUE; `labelaudit settings scan` lists them."""
    err = Console(stderr=True)
    with handle_errors(resumable=True):
        settings = merged(ctx, ScanConfig, config, dict(
            path_column=path_column, label_column=label_column, device=device, model=model, image_size=image_size,
            epochs=epochs, batch_size=batch_size, seed=seed, threshold=threshold,
            trusted=str(trusted) if trusted else None, resume=resume or None), section="scan")
        with command_progress(err, enabled=not quiet and not as_json) as progress:
            result = scan(data, out=out, manifest=manifest, root=root, config=settings, progress=progress)
    if env_rank() != 0:  # under torchrun only rank 0 prints the summary
        return
    if as_json:
        typer.echo(json.dumps({**result.summary.to_json(), "out": str(out), "noise_model": result.run.noise_model.method}))
    elif not quiet:
        render_scan_summary(Console(), result)
