#!/usr/bin/env python3
"""Noise-rate and calibration benchmark: from clean data to 60% noise, synthetic and human noise.

    python benchmarks/noise_rate.py                          # every case (~10 min on 2 cores)
    python benchmarks/noise_rate.py --cases digits_none digits_uniform_0.05
    python benchmarks/noise_rate.py --no-held-out            # development cases only
    python benchmarks/noise_rate.py --cases cifar10n_uniform_0.05_50k --tag noise_rate_50k  # 5× the images
    python benchmarks/noise_rate.py --cases cifar10n_random1_50k --tag noise_rate_50k --merge  # add a row
    python benchmarks/noise_rate.py --cases roman_numeral_review mnist_test_validated cifar10_test_validated \
        --tag noise_rate_real                                 # label errors people found (held out)

Each case is scanned with default settings (plus the case's documented options, e.g. --augment crop
for digits). Rows: true noise rate; estimated rate with its stated 95% interval (noise/interval.py)
and whether it holds the truth; absolute error;
the model range (the rate with any mixture component that straddles zero counted clean, and counted
mislabeled: "none" when every component is decided) and the epochs the proxy ran; flagged count
against the true count; AUROC and R-precision (precision among the k most suspicious, k the true count)
of the ranking score, and in the JSON the share of the true errors among the top 1%; expected calibration error (ECE) of
p_mislabeled over 10 equal-width bins, whose reliability table (per bin: count, mean p, share truly
mislabeled) goes to the JSON; and the class-rate MAE of shared/bench/evaluate.py (the per-class noise
rates against the truth; its transition_row_l1 goes to the JSON too). The CIFAR-10N worse_label
cases are held out: measured, never tuned on; so are the real label errors of ../shared/data, run when
named: the Roman-numeral set's manual review (373 of 2,880 flagged, 265 of them junk images with no
class), and MNIST's and CIFAR-10's test sets with the errors cleanlab/label-errors validated on
MTurk (15 and 54 of 10,000; the validated guess is the clean label). Under the table, the suite's
summary: the share of cases whose interval holds the truth, the median width and the median absolute
error, over the development cases and over all rows. Writes benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from labelaudit import scan
from _cases import (LARGE_CASES, NOISE_RATE_CASES, REAL_CASES, WORK, build, case_label, chosen_cases, evaluate,
                    read_truth, run_and_save, timed)

EXTRA = {**LARGE_CASES, **REAL_CASES}  # run only when named
ALL = {**NOISE_RATE_CASES, **EXTRA}
BINS = 10


def reliability(p: np.ndarray, y: np.ndarray, bins: int = BINS) -> tuple[float, list[dict]]:
    """ECE = Σ_b (n_b / N) · |mean p in b − share mislabeled in b|, with the per-bin table."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if not m.any():
            continue
        mean_p, share = float(p[m].mean()), float(y[m].mean())
        ece += m.sum() / len(p) * abs(mean_p - share)
        table.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": int(m.sum()), "mean_p": mean_p,
                      "share_mislabeled": share})
    return float(ece), table


def run_case(name: str) -> dict:
    case = ALL[name]
    folder = build(case)
    result, wall = timed(scan, folder / "images", out=WORK / f"{name}.noise-audit", cache_dir=str(WORK / "cache"),
                         **case.scan_options)
    s = result.samples.set_index("path").join(read_truth(folder), how="inner")
    y = s["is_noisy"].to_numpy()
    p = s["p_mislabeled"].to_numpy()
    ece, table = reliability(p, y)
    metrics = evaluate(WORK / f"{name}.noise-audit", folder / "truth.csv")  # the per-class view, shared evaluate.py
    lo, hi = result.summary["noise_rate_interval"]
    est = result.summary["noise_rate"]
    return {
        "case": name, "held_out": case.held_out, "n": int(len(s)), "true_rate": float(y.mean()),
        "est_rate": est, "interval": [lo, hi], "abs_error": abs(est - float(y.mean())),
        "in_interval": bool(lo <= y.mean() <= hi),
        "flagged": int(s["is_label_issue"].sum()), "true_count": int(y.sum()),
        "auroc": float(roc_auc_score(y, s["score"])) if 0 < y.sum() < len(y) else None,
        "r_precision": metrics.get("r_precision"), "top1pct_recall": top_recall(s["score"].to_numpy(), y, 0.01),
        "ece": ece, "reliability": table, "scan_s": wall, "options": case.scan_options,
        "noise_method": result.run["noise_model"]["method"],
        "class_rate_mae": metrics.get("class_rate_mae"), "transition_row_l1": metrics.get("transition_row_l1"),
        "epochs_run": result.run["epochs_run"], "model_range": result.summary.get("noise_rate_model_range"),
    }


def top_recall(score: np.ndarray, y: np.ndarray, share: float) -> float | None:
    """The share of the truly mislabeled samples among the ``share`` of samples ranked most suspicious
    (what a reviewer who looks at the top 1% finds, on sets with few errors)."""
    if not y.any():
        return None
    top = np.argsort(-score, kind="stable")[: max(1, int(round(share * len(score))))]
    return float(y[top].sum() / y.sum())


def target(row: dict) -> float:
    """The issue's bound on the absolute error for this case."""
    if row["true_rate"] == 0:
        return 0.02
    return 0.02 if row["true_rate"] <= 0.2 else 0.04


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"  # rows run before the column existed have none


def _range(row: dict) -> str:
    """The estimate's model range (a mixture component straddling zero), "none" when every component is
    decided, "–" for rows run before the column existed."""
    if "model_range" not in row:
        return "–"
    return "none" if row["model_range"] is None else f"{row['model_range'][0]:.3f}–{row['model_range'][1]:.3f}"


def markdown(rows: list[dict]) -> str:
    lines = ["| case | true rate | estimate [95% interval] | holds truth | abs. error (target) | model range | epochs "
             "| flagged / true | AUROC | R-precision | ECE | class-rate MAE |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        auroc = "–" if r["auroc"] is None else f"{r['auroc']:.4f}"
        mark = "✓" if r["abs_error"] <= target(r) else "✗"
        lines.append(f"| {case_label(r)} | {r['true_rate']:.4f} | "
                     f"{r['est_rate']:.4f} [{r['interval'][0]:.4f}, {r['interval'][1]:.4f}] | "
                     f"{'✓' if r['in_interval'] else '✗'} | {r['abs_error']:.4f} (≤ {target(r):.2f} {mark}) | {_range(r)} | {r.get('epochs_run', '–')} | "
                     f"{r['flagged']:,} / {r['true_count']:,} | "
                     f"{auroc} | {_fmt(r.get('r_precision'))} | {r['ece']:.4f} | {_fmt(r.get('class_rate_mae'))} |")
    if len(rows) < 2:  # one row: the line printed as a case finishes
        return "\n".join(lines) + "\n"
    lines += ["", "| rows | cases | interval holds the truth | median width | median abs. error | no [0, 0] above 1% noise |",
              "|---|---|---|---|---|---|"]
    for label, chosen in (("development", [r for r in rows if not r["held_out"]]), ("all", rows)):
        if chosen:
            s = suite_summary(chosen)
            lines.append(f"| {label} | {s['cases']} | {s['holds']} of {s['cases']} ({s['coverage']:.0%}) | "
                         f"{s['median_width']:.4f} | {s['median_abs_error']:.4f} | "
                         f"{'✓' if s['zero_width_above_1pct'] == 0 else '✗ ' + str(s['zero_width_above_1pct'])} |")
    return "\n".join(lines) + "\n"


def suite_summary(rows: list[dict]) -> dict:
    """Coverage of the stated intervals, their median width, the median absolute error, and how many
    cases with more than 1% noise were given an interval of zero width."""
    holds = sum(bool(r["in_interval"]) for r in rows)
    return {"cases": len(rows), "holds": holds, "coverage": holds / len(rows),
            "median_width": float(np.median([r["interval"][1] - r["interval"][0] for r in rows])),
            "median_abs_error": float(np.median([r["abs_error"] for r in rows])),
            "zero_width_above_1pct": sum(r["true_rate"] > 0.01 and r["interval"][1] - r["interval"][0] == 0
                                         for r in rows)}


def main() -> None:
    run_and_save(chosen_cases(__doc__, NOISE_RATE_CASES, "noise_rate", extra=EXTRA), run_case, markdown)


if __name__ == "__main__":
    main()
