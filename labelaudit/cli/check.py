"""``labelaudit check``: exit 0 when an audit is within every threshold, 1 when one is passed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..audit.read import is_audit_dir, load_audit
from ..gate import Thresholds, check_audit, find_config, load_thresholds, to_markdown, verdict_lines
from ..pipeline import ScanConfig, scan
from ._errors import handle_errors
from .progress import RichProgress

_D = ScanConfig()


def check_cli(
    target: Path = typer.Argument(..., help="An audit folder (the --out of a scan), or data to scan first "
                                            "(image folder or manifest).", show_default=False),
    max_noise_rate: Optional[float] = typer.Option(None, help="Fail when the dataset noise rate exceeds this "
                                                               "(0.05 = 5%)."),
    max_class_noise_rate: Optional[float] = typer.Option(None, help="Fail when any class's noise rate exceeds "
                                                                     "this."),
    max_issues: Optional[int] = typer.Option(None, help="Fail when more samples than this are flagged."),
    max_model_range: Optional[float] = typer.Option(None, help="Fail when the noise model's range for the dataset "
                                                                "noise rate is wider than this (0 = fail whenever "
                                                                "the estimate is uncertain)."),
    rate_bound: Optional[str] = typer.Option(None, help="What --max-noise-rate and --max-rise compare: estimate "
                                                         "(default), lower (fail only when the 95% interval's lower "
                                                         "end exceeds the limit) or upper (pass only when its upper "
                                                         "end is within)."),
    baseline: Optional[Path] = typer.Option(None, help="An earlier audit: count only samples and suspects "
                                                       "that are new since it, and compare --max-rise with it."),
    max_rise: Optional[float] = typer.Option(None, help="Fail when the dataset noise rate rose by more than this "
                                                         "since --baseline (0.02 = 2 points; with --rate-bound "
                                                         "lower: the new interval's lower end less the old one's "
                                                         "upper end)."),
    config: Optional[Path] = typer.Option(None, help="TOML file with the thresholds \\[default: the nearest "
                                                     "labelaudit.toml or pyproject.toml \\[tool.labelaudit.check]]."),
    markdown: Optional[Path] = typer.Option(None, help="Also write the verdict as Markdown (e.g. "
                                                       "$GITHUB_STEP_SUMMARY)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as one JSON object."),
    out: Path = typer.Option(Path("labelaudit-out"), "--out", "-o", help="Where to write the audit when "
                                                                          "TARGET is data to scan."),
    epochs: str = typer.Option(_D.epochs, help="Scan option, when TARGET is data: auto or a number."),
    image_size: Optional[int] = typer.Option(_D.image_size, help="Scan option, when TARGET is data."),
    augment: str = typer.Option(_D.augment, help="Scan option, when TARGET is data."),
    device: str = typer.Option(_D.device, help="Scan option, when TARGET is data."),
    seed: int = typer.Option(_D.seed, help="Scan option, when TARGET is data."),
    proxy_runs: int = typer.Option(_D.proxy_runs, help="Scan option, when TARGET is data: proxies whose estimates "
                                                       "widen the interval --rate-bound reads."),
) -> None:
    """Gate a CI job on label noise: exit 0 when every threshold holds, 1 when one is passed, 2 for
    usage errors."""
    err = Console(stderr=True)
    with handle_errors(exit_code=2):
        thresholds = Thresholds(max_noise_rate=max_noise_rate, max_class_noise_rate=max_class_noise_rate,
                                max_issues=max_issues, max_model_range=max_model_range, rate_bound=rate_bound,
                                max_rise=max_rise)
        source = config or find_config()
        if source is not None:
            thresholds = load_thresholds(source).merged(thresholds)
        thresholds.require(with_baseline=baseline is not None)  # before a scan that may take minutes
        base = load_audit(baseline) if baseline is not None else None
        if is_audit_dir(target):
            audit = load_audit(target)
        else:
            with RichProgress(err, enabled=not as_json) as progress:
                audit = scan(target, out=out, progress=progress, epochs=epochs, image_size=image_size,
                             augment=augment, device=device, seed=seed, proxy_runs=proxy_runs)
        result = check_audit(audit, thresholds, base)
        result.config = str(source) if source else None
        if markdown is not None:
            markdown.write_text(to_markdown(result, audit))
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "audit": str(audit.path)}))
    else:
        console = Console()
        console.print(f"[bold]labelaudit check[/bold] {audit.path} · {result.scope} ({result.n_samples:,} samples)"
                      + (f" · thresholds from {source}" if source else ""), soft_wrap=True, highlight=False)
        for line in verdict_lines(result):
            style = "green" if line.startswith("PASS") else "bold red"
            console.print(f"[{style}]{line[:4]}[/{style}]{line[4:]}", soft_wrap=True, highlight=False)
        for note in result.caveats:
            console.print(f"[yellow]Uncertain: {note}.[/yellow]", soft_wrap=True, highlight=False)
        console.print("[green]passed[/green]" if result.passed else "[bold red]failed[/bold red]")
    raise typer.Exit(0 if result.passed else 1)
