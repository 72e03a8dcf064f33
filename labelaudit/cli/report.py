"""``labelaudit report``: rebuild report.html from an audit folder."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..audit.read import load_audit
from ..errors import UsageError
from ..report import DEFAULT_TOP, write_report
from ._errors import handle_errors


def report_cli(
    audit_dir: Path = typer.Argument(..., help="An audit folder (the --out of a scan).", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the page "
                                                                "\\[default: AUDIT_DIR/report.html]."),
    top: int = typer.Option(DEFAULT_TOP, help="Suspects shown as thumbnails."),
) -> None:
    """Write a self-contained HTML report (summary, score histogram, per-class rates, transition
    matrix, thumbnails of the top suspects)."""
    with handle_errors():
        if top < 0:
            raise UsageError(f"--top {top}: expected 0 or more")
        path = write_report(load_audit(audit_dir), out, top=top)
    typer.echo(f"wrote {path}")
