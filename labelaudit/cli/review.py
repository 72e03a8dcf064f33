"""``labelaudit review``: the Typer signature and help; the work is in :mod:`labelaudit.review`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..audit.read import load_audit
from ..errors import UsageError
from ..review.worksheet import audit_design, read_answers, review_estimates, write_review, write_worksheet
from ._errors import handle_errors


def review_cli(
    audit_dir: Path = typer.Argument(..., help="Audit folder (the --out of labelaudit scan).", show_default=False),
    worksheet: Optional[Path] = typer.Option(None, "--worksheet", help="Write a worksheet of samples to verify "
                                                                       "(CSV) to this new file."),
    n: int = typer.Option(200, "--n", help="Samples the worksheet asks about."),
    seed: int = typer.Option(0, help="Random seed of the draw."),
    answers: Optional[Path] = typer.Option(None, "--answers", help="A filled-in worksheet: estimate the noise "
                                                                   "rates from its answers."),
    as_json: bool = typer.Option(False, "--json", help="Print the estimates as one JSON object."),
) -> None:
    """Verify a few hundred samples by hand and get the dataset's noise rate with a real interval:
    --worksheet writes a stratified draw over the audit's ranking (more samples where errors are
    likely); fill its label column with the class each image shows (none: no class; leave rows
    blank that were not checked), then --answers applies it and writes review.json into the audit."""
    with handle_errors():
        if (worksheet is None) == (answers is None):
            raise UsageError("pass --worksheet FILE to draw samples to verify, or --answers FILE to apply a "
                             "filled-in worksheet")
        audit = load_audit(audit_dir)
        if worksheet is not None:
            rows = write_worksheet(audit, worksheet, n, seed)
            typer.echo(f"wrote {worksheet}: {len(rows):,} samples to verify, drawn over the audit's ranking. Fill "
                       f"in each row's label with the class the image shows (none: an image of no class; leave "
                       f"rows you did not check blank), then: labelaudit review {audit_dir} --answers {worksheet}")
            return
        given = read_answers(audit, answers)
        design = audit_design(audit)
        result = review_estimates(audit, design, given)
        saved = write_review(audit, design, given, result, answers)
    if as_json:
        typer.echo(saved.read_text().strip())
        return
    _render(Console(), result, audit.summary.noise_rate, len(given), saved)


def _render(console: Console, result, unsupervised: float, n: int, saved: Path) -> None:
    r = result.rate
    console.print(f"[bold]Verified noise rate:[/bold] {r.value:.1%} (95% interval {r.low:.1%}–{r.high:.1%}) from "
                  f"{n:,} answers; the unsupervised audit said {unsupervised:.1%}")
    if result.no_class.value > 0:
        nc = result.no_class
        console.print(f"  of which images of no class: {nc.value:.1%} ({nc.low:.1%}–{nc.high:.1%})")
    if result.precision is not None:
        p = result.precision
        console.print(f"[bold]Flags:[/bold] {p.value:.0%} of the flagged samples are label errors "
                      f"({p.low:.0%}–{p.high:.0%})")
    worst = sorted(result.classes.items(), key=lambda kv: -kv[1].value)[:5]
    if worst:
        console.print("[bold]Classes with the most errors:[/bold] "
                      + ", ".join(f"{name} {e.value:.1%} ({e.low:.1%}–{e.high:.1%})" for name, e in worst),
                      soft_wrap=True)
    console.print(f"[dim]Saved to {saved}[/dim]")
