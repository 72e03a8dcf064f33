"""The end-of-scan summary: noise rate, issues found, the top suspects."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def render_scan_summary(console: Console, result, top: int = 10) -> None:
    s = result.summary
    console.print(f"[bold]Estimated noise rate:[/bold] {s['noise_rate']:.1%} of {s['n_samples']:,} samples "
                  f"({s['n_classes']} classes)")
    console.print(f"[bold]Label issues found:[/bold] {s['n_label_issues']:,}"
                  + (f"   [yellow]unreadable files: {s['n_errors']:,} (see errors.parquet)[/yellow]"
                     if s["n_errors"] else ""))
    console.print(f"[dim]Noise model: {result.run['noise_model']['method']}[/dim]")
    flows = s.get("top_flows") or []
    if flows:
        console.print("[bold]Largest label flows[/bold] (share of a true class filed under another label):")
        for f in flows[:3]:
            console.print(f"  {f['true']} → {f['noisy']}: {f['p']:.0%}", soft_wrap=True)
    suspects = result.suspects.head(top)
    if len(suspects):
        table = Table(title=f"Top {len(suspects)} suspects", title_justify="left")
        for col, kw in (("rank", {"justify": "right"}), ("path", {"overflow": "fold"}), ("given", {}),
                        ("predicted", {}), ("p(mislabeled)", {"justify": "right"})):
            table.add_column(col, **kw)
        for row in suspects.itertuples(index=False):
            table.add_row(str(row.rank), row.path, row.given_label, row.predicted_label, f"{row.p_mislabeled:.2f}")
        console.print(table)
    if result.out is not None:
        console.print(f"Audit written to [bold]{result.out}[/bold]")
