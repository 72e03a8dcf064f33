#!/usr/bin/env python3
"""Noise-model comparison on the development sets: train the proxy once per case, then compare the
estimators on the same recorded dynamics.

    python benchmarks/noise_models.py                         # default proxy
    python benchmarks/noise_models.py --epochs 25 --tag noise_models_e25
    python benchmarks/noise_models.py --model medium --cases cifar10n_random1_10k

Rows: true noise rate; AUROC of AUL, of AUM, and of AUM averaged over epochs 6..E only; the
estimate of the AUL paper's mixture (2 components on AUL, BIC against 1), of the same mixture on
-AUM, and of the margin mixture (the default); the proxy's accuracy against the clean labels.
Never runs on the held-out CIFAR-10N worse_label set. Writes benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from labelaudit.noise.mixture import fit_aul_gmm, fit_margin_mixture
from labelaudit.config import parse_epochs
from labelaudit.dynamics.proxy import ProxySettings
from labelaudit.scores import aul, aum
from _cases import DEV_CASES, save_results, load_case, timed

LATE_FROM = 5  # "late" AUM averages epochs 6..E (0-based index 5 on)


def _auroc(y: np.ndarray, score: np.ndarray) -> float | None:
    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else None


def run_case(name: str, settings: ProxySettings) -> dict:
    case = DEV_CASES[name]
    loaded = load_case(case)
    y, clean = loaded.is_noisy, loaded.clean
    dyn, train_s = timed(loaded.train, settings)
    aul_s, aum_s, late = aul(dyn.loss), aum(dyn.margin), aum(dyn.margin[LATE_FROM:])
    return {
        "case": name, "true_rate": float(y.mean()),
        "auroc_aul": _auroc(y, aul_s), "auroc_aum": _auroc(y, -aum_s), "auroc_aum_late": _auroc(y, -late),
        "est_paper_aul_gmm": fit_aul_gmm(aul_s).noise_rate,
        "est_gmm_on_aum": fit_aul_gmm(-aum_s).noise_rate,
        "est_margin_mixture": fit_margin_mixture(aum_s).noise_rate,
        "proxy_acc_vs_clean": float((dyn.mean_probs.argmax(1) == clean).mean()),
        "train_s": train_s, "settings": {**settings.__dict__, **case.scan_options},
    }


def markdown(rows: list[dict]) -> str:
    cols = ["true_rate", "auroc_aul", "auroc_aum", "auroc_aum_late", "est_paper_aul_gmm", "est_gmm_on_aum",
            "est_margin_mixture", "proxy_acc_vs_clean", "train_s"]
    lines = ["| case | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        lines.append(f"| {r['case']} | " + " | ".join("–" if r[c] is None else f"{r[c]:.4f}" if c != "train_s"
                                                   else f"{r[c]:.0f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(DEV_CASES), choices=list(DEV_CASES))
    ap.add_argument("--epochs", default="auto", help="auto (the scan's default) or a number")
    ap.add_argument("--model", default=ProxySettings.model)
    ap.add_argument("--tag", default="noise_models")
    args = ap.parse_args()
    max_epochs, stop_from = parse_epochs(args.epochs)
    settings = ProxySettings(epochs=max_epochs, stop_from=stop_from, model=args.model)
    rows = []
    for name in args.cases:
        rows.append(run_case(name, settings))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    save_results(args.tag, rows, markdown(rows))


if __name__ == "__main__":
    main()
