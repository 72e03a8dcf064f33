#!/usr/bin/env python3
"""Detection benchmark: scan each case with default settings, score it against the truth.

    python benchmarks/detection.py                       # all cases
    python benchmarks/detection.py --cases digits_none   # some
    python benchmarks/detection.py --epochs 5            # override a scan option everywhere

Writes benchmarks/results/detection.json and detection.md (AUROC, AP, precision, recall,
noise-rate error, wall time, images/s). Run on a 2-core CPU for the numbers in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from labelaudit import scan
from _cases import CASES, WORK, build, evaluate, machine_meta, read_truth, save_results

COLUMNS = [("auroc", "AUROC", "{:.4f}"), ("ap", "AP", "{:.4f}"), ("precision", "precision", "{:.3f}"),
           ("recall", "recall", "{:.3f}"), ("noise_rate_true", "true rate", "{:.4f}"),
           ("noise_rate_est", "est. rate", "{:.4f}"), ("noise_rate_abs_err", "rate error", "{:.4f}"),
           ("class_rate_mae", "class-rate MAE", "{:.4f}"), ("transition_row_l1", "T row L1", "{:.4f}"),
           ("flows_found", "true flows found", "{:.0%}"),
           ("scan_s", "scan s", "{:.1f}"), ("images_per_s", "train img/s", "{:,.0f}")]


def flows_found(audit: Path, folder: Path) -> float | None:
    """Share of true classes with label flips whose main flip target is the largest off-diagonal
    entry of that row of the estimated T (1.0 = every true flow found); None without flips."""
    truth = read_truth(folder)
    flips = truth[truth["is_noisy"] & (truth["clean_label"] != "")]
    if flips.empty:
        return None
    main = flips.groupby("clean_label")["noisy_label"].agg(lambda s: s.mode()[0])
    t = pd.read_parquet(audit / "transition.parquet").astype({"true_label": str, "noisy_label": str})
    off = t[t["true_label"] != t["noisy_label"]]
    best = off.loc[off.groupby("true_label")["p"].idxmax()].set_index("true_label")["noisy_label"]
    return float((best.reindex(main.index) == main).mean())


def run_case(name: str, overrides: dict) -> dict:
    case = CASES[name]
    folder = build(case)
    out = WORK / f"{name}.audit"
    t = time.perf_counter()
    result = scan(folder / "images", out=out, cache_dir=str(WORK / "cache"), **{**case.scan_options, **overrides})
    wall = time.perf_counter() - t
    metrics = evaluate(out, folder / "truth.csv")
    metrics["flows_found"] = flows_found(out, folder)
    run = result.run
    n, epochs = run["summary"]["n_samples"], run["config"]["epochs"]
    return {"case": name, "held_out": case.held_out, **metrics, "scan_s": wall,
            "train_s": run["timings"]["train_s"], "images_per_s": n * epochs / run["timings"]["train_s"],
            "noise_method": run["noise_model"]["method"], "options": {**case.scan_options, **overrides}}


def markdown(rows: list[dict]) -> str:
    head = "| case | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        cells = [fmt.format(r[k]) if isinstance(r.get(k), (int, float)) else "–" for k, _, fmt in COLUMNS]
        lines.append(f"| {r['case']}{' (held out)' if r['held_out'] else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--score", choices=["aul", "aum"])
    ap.add_argument("--tag", default="detection", help="name of the result files")
    args = ap.parse_args()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("score", args.score)) if v is not None}
    rows = []
    for name in args.cases:
        row = run_case(name, overrides)
        rows.append(row)
        print(f"{name:24s} auroc {row.get('auroc', float('nan')):.4f}  rate {row['noise_rate_est']:.4f} "
              f"(true {row['noise_rate_true']:.4f})  {row['scan_s']:.0f}s", flush=True)
    save_results(args.tag, {"meta": machine_meta(), "rows": rows}, markdown(rows))


if __name__ == "__main__":
    main()
