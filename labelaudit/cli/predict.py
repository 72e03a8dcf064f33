"""``labelaudit predict``: predictions of a trained model, to Parquet."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..robust import predict
from ._errors import handle_errors
from ._options import ALLOW_OUTSIDE_ROOT
from .progress import RichProgress


def predict_cli(
    model_dir: Path = typer.Argument(..., help="A model folder (the --out of `labelaudit train`).",
                                     show_default=False),
    data: Optional[Path] = typer.Argument(None, help="Image folder or manifest to predict.", show_default=False),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Manifest (path, label) to predict."),
    root: Optional[Path] = typer.Option(None, help="Folder the manifest's relative paths resolve against."),
    allow_outside_root: bool = ALLOW_OUTSIDE_ROOT,
    out: Path = typer.Option(Path("predictions.parquet"), "--out", "-o", help="Parquet file to write."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(0, help="Decode processes; 0 = one per core (max 8)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Write path, given_label, predicted_label, confidence and p_<class> for every image."""
    with handle_errors():
        with RichProgress(Console(stderr=True), enabled=not quiet) as progress:
            df = predict(model_dir, data, manifest=manifest, root=root, out=out, device=device, workers=workers,
                         progress=progress, allow_outside_root=allow_outside_root)
    if not quiet:
        agree = (df["predicted_label"] == df["given_label"]).mean() if len(df) else float("nan")
        typer.echo(f"wrote {out}: {len(df):,} predictions; {agree:.1%} agree with the given labels")
