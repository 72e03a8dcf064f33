#!/usr/bin/env python3
"""What a trusted set buys the scan: T from (verified, given) pairs, and the audit checked against it.

    python benchmarks/trusted.py                                   # digits cases, 10 trusted per class
    python benchmarks/trusted.py --cases digits_uniform_0.4 digits_pair_0.2 digits_asym_0.3 digits_uniform_0.1 \
        digits_none cifar10n_random1_10k cifar10n_uniform_0.05_10k  # the development cases in results/trusted.md
    python benchmarks/trusted.py --cases cifar10n_worst_10k --merge  # then the held-out case, added to them
    python benchmarks/trusted.py --draw worksheet --cases ...      # the draw a user gets: export --mode verify

For each case the scan runs once without a trusted set and once per seed with ``--trusted``: a
manifest of ``--per-class`` samples drawn (seeded) from the case's own images, with their clean label as
the verified label (so each is a (verified, given) pair). ``--draw clean`` (default, results/trusted.*)
draws per *clean* class, which no user can do; ``--draw worksheet`` (results/trusted_worksheet.*) draws
what ``labelaudit export AUDIT --mode verify --per-class N --seed S`` hands a person, per *given* label
from the scan without a trusted set (export.verify_rows), and fills in the clean labels as that person
would. Rows: transition_row_l1 of both scans (as ../shared/bench/evaluate.py computes it), the noise-rate error and
class-rate MAE of both (the scan with the trusted set recalibrates p(mislabeled)), and the audit check the
scan reports (recall on the trusted samples whose given label is wrong, false alarms on the rest)
next to the same numbers over the whole dataset. Writes benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pandas as pd

from _cases import (CASES, DEV_CASES, NOISE_RATE_CASES, WORK, build, evaluate, machine_meta, merge_saved, read_truth,
                    save_results, timed)
from labelaudit import scan
from labelaudit.audit.read import load_audit
from labelaudit.export import verify_rows

DEFAULT_CASES = ["digits_uniform_0.4", "digits_pair_0.2", "digits_asym_0.3"]
ALL = {**CASES, **DEV_CASES, **NOISE_RATE_CASES}


def trusted_manifest(folder, per_class: int, seed: int):
    """``per_class`` samples of every clean class, drawn with ``seed``, as path (relative to the case
    folder) and verified (clean) label."""
    truth = read_truth(folder).reset_index()
    truth = truth[truth["clean_label"] != ""]
    rng = np.random.default_rng(seed)
    picks = []
    for _, rows in truth.groupby("clean_label", sort=True):
        picks.append(rows.iloc[rng.choice(len(rows), size=min(per_class, len(rows)), replace=False)])
    chosen = pd.concat(picks)
    out = folder / f"trusted_{per_class}_s{seed}.csv"
    pd.DataFrame({"path": "images/" + chosen["path"], "label": chosen["clean_label"]}).to_csv(out, index=False)
    return out


def worksheet_manifest(folder, audit, per_class: int, seed: int):
    """``export --mode verify``'s draw from ``audit`` (per given label), filled in with the clean labels."""
    truth = read_truth(folder)
    rows = verify_rows(load_audit(audit), per_class, seed)
    rel = [os.path.relpath(p, folder / "images") for p in rows["path"]]
    rows["label"] = truth.loc[rel, "clean_label"].to_numpy()
    out = folder / f"worksheet_{per_class}_s{seed}.csv"
    rows.to_csv(out, index=False)
    return out


def run_case(name: str, per_class: int, seeds: list[int], draw: str = "clean") -> dict:
    case = ALL[name]
    folder = build(case)
    cache = str(WORK / "cache")
    base = folder.parent / f"{name}.trusted-base"
    if not (base / "run.json").exists():
        scan(folder / "images", out=base, cache_dir=cache, **case.scan_options)
    without = evaluate(base, folder / "truth.csv")
    rows = []
    for seed in seeds:
        if draw == "worksheet":
            manifest = worksheet_manifest(folder, base, per_class, seed)
            out = folder.parent / f"{name}.trusted-ws-{per_class}-s{seed}"
        else:
            manifest = trusted_manifest(folder, per_class, seed)
            out = folder.parent / f"{name}.trusted-{per_class}-s{seed}"
        _, seconds = timed(scan, folder / "images", out=out, cache_dir=cache, trusted=str(manifest),
                           **case.scan_options)
        with_t = evaluate(out, folder / "truth.csv")
        run = json.loads((out / "run.json").read_text())
        rows.append({"seed": seed, "transition_row_l1": with_t["transition_row_l1"], "check": run["trusted"]["check"],
                     "calibration": run["trusted"].get("calibration"),
                     "noise_rate_abs_err": with_t.get("noise_rate_abs_err"),
                     "class_rate_mae": with_t.get("class_rate_mae"), "scan_s": seconds})
        print(f"{name} seed {seed}: row L1 {without['transition_row_l1']:.4f} → {with_t['transition_row_l1']:.4f}",
              flush=True)
    l1 = [r["transition_row_l1"] for r in rows]
    return {"case": name, "per_class": per_class, "draw": draw, "seeds": seeds, "held_out": case.held_out,
            "row_l1_without": without["transition_row_l1"], "row_l1_with": l1,
            "row_l1_with_mean": float(np.mean(l1)), "lower": bool(np.mean(l1) < without["transition_row_l1"]),
            "recall_all": without.get("recall"), "precision_all": without.get("precision"),
            "noise_rate_true": without.get("noise_rate_true"),
            "noise_rate_abs_err_without": without.get("noise_rate_abs_err"),
            "noise_rate_abs_err_with_mean": _mean(r["noise_rate_abs_err"] for r in rows),
            "class_rate_mae_without": without.get("class_rate_mae"),
            "class_rate_mae_with_mean": _mean(r["class_rate_mae"] for r in rows), "runs": rows}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _lower(r: dict) -> str:
    return "yes" if r["lower"] else "same" if r["row_l1_with_mean"] == r["row_l1_without"] else "no"


def _arrow(before, after) -> str:
    return "–" if before is None or after is None else f"{before:.3f} → {after:.3f}"


def markdown(results: list[dict]) -> str:
    lines = ["| case | trusted / class | row L1 without | row L1 with (mean over seeds) | lower? | "
             "noise-rate error without → with | class-rate MAE without → with | "
             "trusted check: recall | trusted check: false alarms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rec = [x["check"]["recall"] for x in r["runs"] if x["check"]["recall"] is not None]
        fa = [x["check"]["false_alarm_rate"] for x in r["runs"] if x["check"]["false_alarm_rate"] is not None]
        rec_s = f"{np.mean(rec):.2f}" if rec else "–"
        fa_s = f"{np.mean(fa):.3f}" if fa else "–"
        with_s = ", ".join(f"{v:.4f}" for v in r["row_l1_with"])
        lines.append(f"| {r['case']} | {r['per_class']} | {r['row_l1_without']:.4f} | {r['row_l1_with_mean']:.4f} "
                     f"({with_s}) | {_lower(r)} | "
                     f"{_arrow(r.get('noise_rate_abs_err_without'), r.get('noise_rate_abs_err_with_mean'))} | "
                     f"{_arrow(r.get('class_rate_mae_without'), r.get('class_rate_mae_with_mean'))} | {rec_s} | {fa_s} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=DEFAULT_CASES, choices=sorted(ALL))
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--draw", choices=("clean", "worksheet"), default="clean",
                    help="clean: per clean class; worksheet: export --mode verify's draw, per given label")
    ap.add_argument("--tag", help="results name [default: trusted, or trusted_worksheet with --draw worksheet]")
    ap.add_argument("--merge", action="store_true", help="keep the other cases of an earlier results file")
    args = ap.parse_args()
    args.tag = args.tag or ("trusted" if args.draw == "clean" else "trusted_worksheet")
    results = [run_case(name, args.per_class, args.seeds, args.draw) for name in args.cases]
    if args.merge:
        results = merge_saved(args.tag, results, key=lambda r: r["case"], field="results")
    results.sort(key=lambda r: r["held_out"])  # stable: a case new to the file still goes before the held-out set
    save_results(args.tag, {"meta": machine_meta(), "results": results}, markdown(results))


if __name__ == "__main__":
    main()
