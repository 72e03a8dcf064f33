"""``labelaudit review``: the Typer signature and help; the work is in :mod:`labelaudit.review`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..audit.read import load_audit
from ..audit.write import REVIEW_JSON, UNVERIFIED
from ..errors import UsageError
from ..review.session import ReviewSession, serve
from ..review.worksheet import apply_answers, read_answers, write_worksheet
from ._errors import handle_errors


def review_cli(
    audit_dir: Path = typer.Argument(..., help="Audit folder (the --out of labelaudit scan).", show_default=False),
    n: int = typer.Option(200, "--n", help="Samples to verify (the draw of a new review or worksheet)."),
    worksheet: Optional[Path] = typer.Option(None, "--worksheet", help="Instead of the page: write the samples to "
                                                                       "verify to this new CSV file."),
    answers: Optional[Path] = typer.Option(None, "--answers", help="Apply a filled-in worksheet (or a review.csv) "
                                                                   "to the audit."),
    port: int = typer.Option(0, help="Port of the page on 127.0.0.1 (0: any free one)."),
    browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the page in the default browser."),
    seed: int = typer.Option(0, help="Random seed of the draw."),
    as_json: bool = typer.Option(False, "--json", help="With --answers: print the estimates as one JSON object."),
) -> None:
    """Verify a few hundred samples by hand, then get the dataset's noise rate with a real interval and
    the audit recalibrated on the answers.

    Without options: a page on 127.0.0.1 shows a stratified draw over the audit's ranking (more
    samples where errors are likely) one at a time; every answer is saved to AUDIT/review.csv at once,
    a second run resumes, and the answers are applied to the audit when the page's button is pressed
    or the command stops (Ctrl-C). --worksheet writes the same draw as a CSV to fill in elsewhere (the
    class each image shows in its label column; none for an image of no class; blank: not checked);
    --answers applies it."""
    with handle_errors():
        if worksheet is not None and answers is not None:
            raise UsageError("pass --worksheet FILE to draw samples to verify, or --answers FILE to apply a "
                             "filled-in worksheet, not both")
        audit = load_audit(audit_dir)
        if worksheet is not None:
            rows = write_worksheet(audit, worksheet, n, seed)
            typer.echo(f"wrote {worksheet}: {len(rows):,} samples to verify, drawn over the audit's ranking. Fill "
                       f"in each row's label with the class the image shows (none: an image of no class; leave "
                       f"rows you did not check blank), then: labelaudit review {audit_dir} --answers {worksheet}")
            return
        if answers is not None:
            given = read_answers(audit, answers)
            applied = apply_answers(audit, given, answers)
            if as_json:
                typer.echo(json.dumps(applied.audit.review, indent=2))
                return
            render_applied(Console(), applied)
            return
        session = ReviewSession(audit, n=n, seed=seed)
        server, url = serve(session, port)
    _serve(session, server, url, browser)


def _serve(session, server, url: str, browser: bool) -> None:
    """Serve the page until Ctrl-C, then apply the answers given since the last apply."""
    console = Console()
    done = session.n_answered
    console.print(f"[bold]Review:[/bold] {'resumed' if session.resumed else 'drew'} {len(session.table):,} samples "
                  f"to verify ({done:,} answered); answers are saved to {session.path} as you go.")
    console.print(f"Open [bold]{url}[/bold] (only this machine can reach it); press Ctrl-C here when done.",
                  soft_wrap=True)
    if browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    with handle_errors():
        if session.n_answered and session.n_answered != session.applied_answers:
            render_applied(console, session.apply())
        else:
            console.print(f"{session.n_answered:,} answers in {session.path}; nothing new to apply")


def render_applied(console: Console, applied) -> None:
    """What the answers said and what they changed in the audit."""
    result, audit = applied.estimates, applied.audit
    verified = audit.summary.extra["verified"]
    r = result.rate
    console.print(f"[bold]Verified noise rate:[/bold] {r.value:.1%} (95% interval {r.low:.1%}–{r.high:.1%}) from "
                  f"{verified['answers']:,} answers; the unsupervised audit said "
                  f"{verified['unsupervised_noise_rate']:.1%}")
    if result.no_class.value > 0:
        nc = result.no_class
        console.print(f"  of which images of no class: {nc.value:.1%} ({nc.low:.1%}–{nc.high:.1%})")
    if result.precision is not None:
        p = result.precision
        console.print(f"[bold]The scan's flags:[/bold] {p.value:.0%} of them are label errors "
                      f"({p.low:.0%}–{p.high:.0%})")
    worst = sorted(result.classes.items(), key=lambda kv: -kv[1].value)[:5]
    if worst:
        console.print("[bold]Classes with the most errors:[/bold] "
                      + ", ".join(f"{name} {e.value:.1%} ({e.low:.1%}–{e.high:.1%})" for name, e in worst),
                      soft_wrap=True)
    if applied.flag_precision is not None:
        console.print(f"[bold]Label issues now flagged:[/bold] {applied.n_flagged:,}, about "
                      f"{applied.flag_precision:.0%} of them label errors, holding about {applied.flag_recall:.0%} "
                      "of all the errors (p(mislabeled) recalibrated on the answers)")
    else:
        console.print("[bold]Label issues now flagged:[/bold] none: no sample's recalibrated p(mislabeled) passes "
                      "the threshold")
    console.print(f"[dim]Updated {audit.path} in place (the scan's own files: {audit.path / UNVERIFIED}); "
                  f"estimates in {audit.path / REVIEW_JSON}[/dim]", soft_wrap=True)
