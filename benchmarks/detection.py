#!/usr/bin/env python3
"""Detection benchmark: scan each case with default settings, score it against the truth.

    python benchmarks/detection.py                       # all cases
    python benchmarks/detection.py --cases digits_none   # some
    python benchmarks/detection.py --epochs 5            # override a scan option everywhere
    python benchmarks/detection.py --cases cifar10n_worst_10k --merge   # re-measure one row, keep the others

Writes benchmarks/results/detection.json and detection.md (AUROC of the fused score and of each
single score, AP, precision, recall, noise-rate error, wall time, images/s). Each case is scanned
twice: with --scores aul,aum,limit (the fused score and every single score), and with the default
--scores aum (no LIMIT) for LIMIT's wall-time ratio.
Run on a 2-core CPU for the numbers in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from labelaudit import scan
from _cases import (CASES, WORK, build, case_label, evaluate, machine_meta, merge_saved, read_truth, save_results,
                    timed)

COLUMNS = [("auroc", "AUROC (score)", "{:.4f}"), ("auroc_aul", "aul", "{:.4f}"), ("auroc_aum", "aum", "{:.4f}"),
           ("auroc_limit", "limit", "{:.4f}"), ("ap", "AP", "{:.4f}"), ("precision", "precision", "{:.3f}"),
           ("recall", "recall", "{:.3f}"), ("noise_rate_true", "true rate", "{:.4f}"),
           ("noise_rate_est", "est. rate", "{:.4f}"), ("noise_rate_abs_err", "rate error", "{:.4f}"),
           ("class_rate_mae", "class-rate MAE", "{:.4f}"), ("transition_row_l1", "T row L1", "{:.4f}"),
           ("flows_found", "true flows found", "{:.0%}"),
           ("scan_s", "scan s", "{:.1f}"), ("scan_s_no_limit", "scan s without LIMIT", "{:.1f}"),
           ("limit_time_ratio", "time ratio", "{:.2f}×"), ("images_per_s", "train img/s", "{:,.0f}")]
NO_LIMIT = {"scores": "aum"}
WITH_LIMIT = {"scores": "aul,aum,limit"}


def score_aurocs(samples: pd.DataFrame, folder: Path) -> dict:
    """AUROC of each single score in a scan's samples (oriented so higher = more suspicious)."""
    from sklearn.metrics import roc_auc_score

    noisy = read_truth(folder).loc[samples["path"], "is_noisy"].to_numpy()
    if noisy.all() or not noisy.any():
        return {}
    columns = {"aul": samples["aul"], "aum": -samples["aum"], "limit": samples.get("limit_distance")}
    return {f"auroc_{k}": float(roc_auc_score(noisy, v)) for k, v in columns.items() if v is not None}


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
    options = {**case.scan_options, **WITH_LIMIT, **overrides}
    base_s = None
    if "scores" not in overrides:  # the same scan without LIMIT, for its time ratio
        _, base_s = timed(scan, folder / "images", out=WORK / f"{name}.no-limit.audit",
                          cache_dir=str(WORK / "cache"), **{**options, **NO_LIMIT})
    result, wall = timed(scan, folder / "images", out=out, cache_dir=str(WORK / "cache"), **options)
    metrics = evaluate(out, folder / "truth.csv")
    metrics.update(score_aurocs(result.samples, folder))
    metrics["flows_found"] = flows_found(out, folder)
    run = result.run
    n, epochs = run["summary"]["n_samples"], run["epochs_run"]
    return {"case": name, "held_out": case.held_out, **metrics, "scan_s": wall, "scan_s_no_limit": base_s,
            "limit_time_ratio": wall / base_s if base_s else None, "scores": run["scores"]["score"],
            "train_s": run["timings"]["train_s"], "images_per_s": n * epochs / run["timings"]["train_s"],
            "epochs_run": epochs, "noise_method": run["noise_model"]["method"],
            "options": {**case.scan_options, **overrides}}


def markdown(rows: list[dict]) -> str:
    head = "| case | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        cells = [fmt.format(r[k]) if isinstance(r.get(k), (int, float)) else "–" for k, _, fmt in COLUMNS]
        lines.append(f"| {case_label(r)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--epochs", help="scan's --epochs: auto (default) or a number")
    ap.add_argument("--scores", help="scan's --scores, e.g. aum or aul,aum,limit")
    ap.add_argument("--tag", default="detection", help="name of the result files")
    ap.add_argument("--merge", action="store_true",
                    help="replace only the named cases' rows in the saved results; keep the others")
    args = ap.parse_args()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("scores", args.scores)) if v is not None}
    rows = []
    for name in args.cases:
        row = run_case(name, overrides)
        rows.append(row)
        print(f"{name:24s} auroc {row.get('auroc', float('nan')):.4f}  rate {row['noise_rate_est']:.4f} "
              f"(true {row['noise_rate_true']:.4f})  {row['scan_s']:.0f}s", flush=True)
    if args.merge:
        rows = merge_saved(args.tag, rows, key=lambda r: r["case"])
    save_results(args.tag, {"meta": machine_meta(), "rows": rows}, markdown(rows))


if __name__ == "__main__":
    main()
