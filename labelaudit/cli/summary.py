"""Rich views of an audit: the end-of-scan summary and ``labelaudit show``'s tables."""
from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

from ..audit.record import RunRecord
from ..noise.mixture import no_class_count, no_class_note
from ..report import sureness_note
from ..scores import unlearned_note


def render_overview(console: Console, run: RunRecord | dict) -> None:
    """Noise rate, issues found, unreadable files, the noise model and the largest label flows."""
    run = run if isinstance(run, RunRecord) else RunRecord.from_json(run)
    s = run.summary
    spread = f" (95% interval {s.noise_rate_interval[0]:.1%}–{s.noise_rate_interval[1]:.1%})" \
        if s.noise_rate_interval else ""
    verified = s.extra.get("verified")
    if verified:
        console.print(f"[bold]Verified noise rate:[/bold] {s.noise_rate:.1%}{spread} of {s.n_samples:,} samples "
                      f"({s.n_classes} classes), from {verified['answers']:,} answers checked by hand (labelaudit "
                      f"review); the scan alone estimated {verified['unsupervised_noise_rate']:.1%}", soft_wrap=True)
    else:
        console.print(f"[bold]Estimated noise rate:[/bold] {s.noise_rate:.1%}{spread} of {s.n_samples:,} "
                      f"samples ({s.n_classes} classes)")
        sure = sureness_note(s)
        if sure:
            console.print(sure, soft_wrap=True, markup=False)
    console.print(f"[bold]Label issues found:[/bold] {s.n_label_issues:,}"
                  + (f"   [yellow]unreadable files: {s.n_errors:,} (see errors.parquet)[/yellow]"
                     if s.n_errors else ""))
    console.print(f"[dim]Noise model: {run.noise_model.method}[/dim]")
    runs = run.noise_model.runs or {}
    if s.noise_rate_runs:
        seeds = ", ".join(map(str, runs.get("seeds", [])))
        each = ", ".join(f"{r:.1%}" for r in s.noise_rate_runs)
        console.print(f"[dim]{len(s.noise_rate_runs)} proxy runs (seeds {seeds}) estimated {each}; the interval "
                      f"pools their bootstrap rounds, the outputs are the first run's[/dim]", soft_wrap=True)
    unlearned = unlearned_note(s.proxy_agreement, s.proxy_kappa)
    if unlearned:
        console.print(f"[yellow]Untrustworthy audit: {unlearned}.[/yellow]", soft_wrap=True)
    n_no_class = no_class_count(run.noise_model.extra, s.n_samples)
    if n_no_class:
        console.print(f"[yellow]{no_class_note(n_no_class)}.[/yellow]", soft_wrap=True)
    if s.noise_rate_model_range:
        low, high = s.noise_rate_model_range
        console.print(f"[yellow]Uncertain estimate: part of the data sits on neither side of the noise model's "
                      f"line (a mixture component straddles a margin of 0), so the rate could be anywhere from "
                      f"{low:.1%} to {high:.1%}. More epochs, more images or verified labels "
                      f"settle it: `labelaudit export AUDIT --mode verify --out verify.csv` draws 10 a class to "
                      f"check by hand, then scan again with --trusted verify.csv.[/yellow]",
                      soft_wrap=True)
    if run.scores:
        console.print(f"[dim]Ranking: {run.scores['score']}[/dim]")
    if run.trusted:
        _render_trusted(console, run.trusted)
    if run.resumed_from_epoch:
        console.print(f"[dim]Resumed from the checkpoint of epoch {run.resumed_from_epoch} "
                      f"of {run.epochs_run or run.config.get('epochs')}[/dim]")
    for k, epoch in enumerate(runs.get("resumed_from_epoch") or [], start=2):
        if epoch:
            console.print(f"[dim]Proxy run {k} resumed from the checkpoint of epoch {epoch} "
                          f"of {runs['epochs_run'][k - 1]}[/dim]")
    stop = run.early_stop
    if stop:
        source = ("the confident joint of its last epochs" if (stop.get("reading") or {}).get("used")
                  else "the noise model")
        console.print(f"[dim]Proxy stopped after epoch {stop['epoch']}: it agreed with {stop['agreement']:.1%} of "
                      f"the given labels, the share {source} believes right "
                      f"({1 - stop['noise_rate']:.1%}); more epochs would memorise the rest[/dim]", soft_wrap=True)
    if s.top_flows:
        console.print("[bold]Largest label flows[/bold] (share of a true class filed under another label):")
        for f in s.top_flows[:3]:
            console.print(f"  {f['true']} → {f['noisy']}: {f['p']:.0%}", soft_wrap=True)


def _render_trusted(console: Console, trusted: dict) -> None:
    """How the audit did on the trusted set, and the recalibration it brought."""
    c = trusted["check"]
    line = f"[bold]Trusted set:[/bold] {trusted['n']:,} verified samples, {c['n_in_data']:,} in the data"
    if c["recall"] is not None:
        line += (f"; the audit flagged {c['n_wrong_flagged']} of the {c['n_given_wrong']} with a wrong label "
                 f"({c['recall']:.0%})")
    if c["false_alarm_rate"] is not None:
        line += (f" and {c['n_right_flagged']} of the {c['n_given_right']} with a right one "
                 f"({c['false_alarm_rate']:.1%} false alarms)")
    console.print(line, soft_wrap=True)
    cal = trusted.get("calibration") or {}
    if "shift" in cal:
        console.print(f"[dim]Calibrated on the trusted set: the mixture said {cal['noise_rate_before']:.1%}, "
                      f"the {cal['n']:,} verified labels move it to {cal['noise_rate']:.1%} "
                      f"(log-odds shift {cal['shift']:+.2f} ± {cal['se']:.2f})[/dim]", soft_wrap=True)


def render_suspects(console: Console, suspects: pd.DataFrame, *, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col, kw in (("rank", {"justify": "right"}), ("path", {"overflow": "fold"}), ("given", {}),
                    ("predicted", {}), ("p(mislabeled)", {"justify": "right"}), ("AUM", {"justify": "right"})):
        table.add_column(col, **kw)
    for row in suspects.itertuples(index=False):
        table.add_row(str(row.rank), str(row.path), str(row.given_label), str(row.predicted_label),
                      f"{row.p_mislabeled:.2f}", f"{row.aum:+.2f}")
    console.print(table)


def render_review(console: Console, suspects: pd.DataFrame, ranked: pd.DataFrame, top: int, which: str = "") -> None:
    """The flagged suspects, or, when none is flagged, the top of the ranking marked as not flagged:
    the noise model can count 0 where the ranking still puts a few errors on top (docs/scores.md)."""
    if len(suspects):
        render_suspects(console, suspects.head(top), title=f"Top {min(top, len(suspects))} of {len(suspects):,} "
                                                           f"suspects{which}")
    elif top and len(ranked):
        render_suspects(console, ranked.head(top),
                        title=f"No label issues flagged{which}. The {min(top, len(ranked))} highest-ranked samples "
                              f"(not flagged; worth a look if you expect errors):")
    else:
        console.print(f"No label issues flagged{which}.")


def render_class_rates(console: Console, rates: pd.DataFrame) -> None:
    """noise.parquet's class rows, worst first."""
    table = Table(title="Noise rate per class (share of the samples given the label that are mislabeled)",
                  title_justify="left")
    for col in ("label", "samples", "noise rate", "est. mislabeled"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for row in rates.sort_values("noise_rate", ascending=False, kind="stable").itertuples(index=False):
        table.add_row(str(row.label), f"{row.n_samples:,}", f"{row.noise_rate:.1%}", f"{row.n_mislabeled:,.1f}")
    console.print(table)


def render_scan_summary(console: Console, result, top: int = 10) -> None:
    render_overview(console, result.run)
    render_review(console, result.suspects, result.ranked, top)
    if result.out is not None:
        console.print(f"Audit written to [bold]{result.out}[/bold]"
                      + (f"; open {result.out / 'report.html'} in a browser" if result.run.config.get("report")
                         else ""))
