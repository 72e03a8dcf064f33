"""``labelaudit show``: an audit folder as tables in the terminal."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..audit.read import load_audit
from ..errors import UsageError
from ._errors import handle_errors
from .summary import render_class_rates, render_overview, render_review


def show_cli(
    audit_dir: Path = typer.Argument(..., help="An audit folder (the --out of a scan).", show_default=False),
    top: int = typer.Option(20, help="How many suspects to list."),
    label: Optional[str] = typer.Option(None, help="Only suspects given this label."),
) -> None:
    """Print an audit's summary, its top suspects and the noise rate of every class."""
    with handle_errors():
        if top < 0:
            raise UsageError(f"--top {top}: expected 0 or more")
        audit = load_audit(audit_dir)
        suspects, ranked = audit.suspects, audit.ranked
        if label is not None:
            labels = set(audit.samples["given_label"])
            if label not in labels:
                raise UsageError(f"--label {label!r}: no such class in {audit_dir}; classes: "
                                 f"{', '.join(sorted(labels)[:20])}{' …' if len(labels) > 20 else ''}")
            suspects = suspects[suspects["given_label"] == label]
            ranked = ranked[ranked["given_label"] == label]
    console = Console()
    render_overview(console, audit.run)
    render_review(console, suspects, ranked, top, f" given '{label}'" if label is not None else "")
    rates = audit.class_rates
    render_class_rates(console, rates if label is None else rates[rates["label"] == label])
