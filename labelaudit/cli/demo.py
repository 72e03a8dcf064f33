"""``labelaudit demo``: the Typer signature and help; the work is :func:`labelaudit.demo.demo`."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..demo import demo
from ._errors import handle_errors
from .progress import RichProgress
from .summary import render_scan_summary


def demo_cli(
    out: Path = typer.Option(Path("labelaudit-demo"), "--out", "-o", help="Folder for the demo's images, "
                                                                          "truth.csv and audit."),
    noise: float = typer.Option(0.1, help="Share of the labels flipped to another digit."),
    seed: int = typer.Option(0, help="Random seed for the flips and the scan."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; only the closing lines."),
) -> None:
    """Try labelaudit with no data of your own: flip some labels of scikit-learn's bundled handwritten
    digits, audit the folder, and see how much of the damage the audit finds (about 30 s on a laptop)."""
    err = Console(stderr=True)
    with handle_errors():
        with RichProgress(err, enabled=not quiet) as progress:
            res = demo(out, noise=noise, seed=seed, progress=progress)
    console = Console()
    if not quiet:
        render_scan_summary(console, res.result)
    n = int(res.truth["is_flipped"].sum())
    summary = res.result.summary
    console.print(f"\n[bold]Demo:[/bold] {n:,} of {len(res.truth):,} digits were given a wrong label "
                  f"({res.true_rate:.1%}); the audit estimates {summary.noise_rate:.1%}.")
    if res.auroc is not None:
        console.print(f"Of the {n:,} most suspicious samples, {res.found_in_top:,} are the flipped ones "
                      f"(AUROC {res.auroc:.3f}).")
    console.print(f"Open {out / 'audit' / 'report.html'} in a browser; the truth is in {out / 'truth.csv'}.")
