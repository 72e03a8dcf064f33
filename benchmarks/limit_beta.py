#!/usr/bin/env python3
"""LIMIT's β (and q's noise model) on synthetic noise: AUROC of limit_distance over the paper's grid.

    python benchmarks/limit_beta.py                                  # digits cases, full grid, gaussian
    python benchmarks/limit_beta.py --dist laplace --betas 0.3 1 3
    python benchmarks/limit_beta.py --cases cifar10n_uniform_0.1_10k --betas 1 3 10 --merge  # add photos
    python benchmarks/limit_beta.py --cases cifar10n_uniform_0.1_10k --betas 10 --model small --lr 3e-3

Trains the proxy with the LIMIT pair directly (no outputs written) with the scan's default settings,
once per β, and reports the AUROC of the eval-mode distance (the scan's ``limit_distance``, but from
q's last weights unless ``--average-epochs``: the saved grid predates the scan's moving average), of its
mean over the training epochs, and the training time relative to the proxy alone. Only synthetic
noise (make_noisy.py) is allowed here: β is chosen on it, never on the real-noise sets.
Writes benchmarks/results/limit_beta.json and .md.
"""
from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from _cases import DEV_CASES, NOISE_RATE_CASES, load_case, machine_meta, merge_saved, save_results, timed
from labelaudit.dynamics.limit import BETA_GRID, LIMIT_DISTS, LimitSettings
from labelaudit.training.models import MODELS
from labelaudit.dynamics.proxy import ProxySettings
from labelaudit.scores import aum

SYNTHETIC = {n: c for n, c in {**DEV_CASES, **NOISE_RATE_CASES}.items()
             if not c.held_out and "random" not in n and "none" not in n and "clean" not in n}
DEFAULT_CASES = ["digits_uniform_0.4", "digits_pair_0.2", "digits_asym_0.3"]


def run_case(name: str, betas: list[float], dist: str, seed: int, model: str, lr: float,
             average: float) -> list[dict]:
    case = SYNTHETIC[name]
    lc = load_case(case)
    settings = ProxySettings(seed=seed)
    base, base_s = timed(lc.train, settings)
    rows = []
    for beta in betas:
        dyn, train_s = timed(lc.train, settings, limit=LimitSettings(dist=dist, beta=beta, model=model, lr=lr,
                                                                     average_epochs=average))
        row = {"case": name, "dist": dist, "beta": beta, "seed": seed, "model": model, "lr": lr,
               "average_epochs": average,
               "auroc_limit": roc_auc_score(lc.is_noisy, dyn.limit_distance),
               "auroc_limit_epochs": roc_auc_score(lc.is_noisy, dyn.limit_epochs.mean(axis=0)),
               "auroc_aum": roc_auc_score(lc.is_noisy, -aum(base.margin)),
               "train_s": train_s, "proxy_train_s": base_s, "time_ratio": train_s / base_s}
        rows.append(row)
        print(f"{name:28s} β={beta:<6g} limit {row['auroc_limit']:.4f}  epochs-mean {row['auroc_limit_epochs']:.4f}"
              f"  aum {row['auroc_aum']:.4f}  {row['time_ratio']:.2f}× proxy time", flush=True)
    return rows


def _beta_table(rows: list[dict], key: str, cases: list[str], betas: list[float]) -> list[str]:
    """One AUROC table, β by case, with the mean over the cases that have every β ("–" where a run is missing)."""
    lines = ["| β | " + " | ".join(cases) + " | mean |", "|" + "---|" * (len(cases) + 2)]
    for beta in betas:
        vals = [next((r[key] for r in rows if r["case"] == c and r["beta"] == beta), None) for c in cases]
        mean = f"{np.mean(vals):.4f}" if None not in vals else "–"
        lines.append(f"| {beta:g} | " + " | ".join("–" if v is None else f"{v:.4f}" for v in vals) + f" | {mean} |")
    return lines


def markdown(rows: list[dict]) -> str:
    cases = list(dict.fromkeys(r["case"] for r in rows))
    betas = sorted(dict.fromkeys(r["beta"] for r in rows))
    lines = ["AUROC of `limit_distance` (eval mode, after training) by β; last column: mean over cases.", "",
             *_beta_table(rows, "auroc_limit", cases, betas), "",
             "AUROC of the training-pass distance's mean over the epochs (trajectories.parquet) by β.", "",
             *_beta_table(rows, "auroc_limit_epochs", cases, betas), "",
             "| case | AUROC of AUM (proxy alone) | training time with LIMIT / proxy alone |", "|---|---|---|"]
    for c in cases:
        rs = [r for r in rows if r["case"] == c]
        lines.append(f"| {c} | {rs[0]['auroc_aum']:.4f} | {np.mean([r['time_ratio'] for r in rs]):.2f}× |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=DEFAULT_CASES, choices=list(SYNTHETIC))
    ap.add_argument("--betas", nargs="*", type=float, default=list(BETA_GRID))
    ap.add_argument("--dist", default="gaussian", choices=LIMIT_DISTS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=LimitSettings.model, choices=list(MODELS), help="f's and q's network")
    ap.add_argument("--lr", type=float, default=LimitSettings.lr, help="f's and q's Adam learning rate")
    ap.add_argument("--average-epochs", type=float, default=0.0,
                    help="q's moving average that scores (0 = q's last weights, as the saved grid was run; the "
                         "scan's default is 1)")
    ap.add_argument("--tag", default="limit_beta")
    ap.add_argument("--merge", action="store_true",
                    help="add to the saved results, replacing only runs of the same case and settings")
    args = ap.parse_args()
    rows = [r for name in args.cases
            for r in run_case(name, args.betas, args.dist, args.seed, args.model, args.lr, args.average_epochs)]
    if args.merge:
        rows = merge_saved(args.tag, rows, key=lambda r: (r["case"], r["dist"], r["beta"], r["seed"], r.get("model"),
                                                          r.get("lr"), r.get("average_epochs", 0.0)))
    save_results(args.tag, {"meta": machine_meta(), "rows": rows}, markdown(rows))


if __name__ == "__main__":
    main()
