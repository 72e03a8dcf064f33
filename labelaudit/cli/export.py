"""``labelaudit export``: a cleaned manifest or ImageFolder tree from an audit folder."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..audit.read import load_audit
from ..export import DEFAULT_PER_CLASS, export
from ._errors import handle_errors


def export_cli(
    audit_dir: Path = typer.Argument(..., help="An audit folder (the --out of a scan).", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="The cleaned manifest (.csv, .parquet, .jsonl), or a new "
                                                      "folder for --mode folder.", show_default=False),
    mode: str = typer.Option("drop", help="drop (leave out label issues), relabel (confident issues take the "
                                          "predicted label, the rest are left out), weight (all samples with "
                                          "their clean-probability weight), folder (an ImageFolder tree) or "
                                          "verify (a random draw of samples to check by hand, for scan --trusted)."),
    min_confidence: Optional[float] = typer.Option(None, help="relabel/folder: the predicted label's probability "
                                                              "needed to relabel \\[default for relabel: 0.5; "
                                                              "folder relabels only when given]."),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv, parquet or jsonl \\[default: from --out's "
                                                             "ending]."),
    copy: bool = typer.Option(False, "--copy", help="--mode folder: copy the images instead of linking them."),
    per_class: int = typer.Option(DEFAULT_PER_CLASS, help="--mode verify: samples to draw of every given label."),
    seed: int = typer.Option(0, help="--mode verify: the random draw's seed."),
) -> None:
    """Write a cleaned manifest (path, label, weight, original_label, changed), a cleaned folder tree, or
    (--mode verify) a worksheet of samples to verify by hand. The input data is never modified."""
    with handle_errors():
        audit = load_audit(audit_dir)
        summary = export(audit, out, mode=mode, min_confidence=min_confidence, fmt=fmt, copy=copy,
                         per_class=per_class, seed=seed)
    if mode == "verify":
        data = audit.run.data
        target = f"--manifest {data.manifest} --root {data.root}" if data.manifest else data.root
        typer.echo(f"wrote {summary.out}: {summary.n_rows:,} samples to verify, up to {per_class} of every given "
                   f"label. Fill in each row's label with the class the image really shows (the given_label "
                   f"column is what the data says: check the image, not that), then audit with the verified "
                   f"labels (and the first scan's options): labelaudit scan {target} --trusted {summary.out}")
        return
    typer.echo(f"wrote {summary.out}: {summary.n_rows:,} samples ({summary.n_dropped:,} left out, "
               f"{summary.n_relabelled:,} relabelled)")
    if mode != "folder":  # its paths are absolute, inside the scanned root: name that root to read it back
        typer.echo(f"scan it with: labelaudit scan --manifest {summary.out} --root {audit.run.data.root}")
