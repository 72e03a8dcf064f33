#!/usr/bin/env python3
"""Does the meta step tell mislabeled samples from clean ones? A cheap look before a long training run.

    python benchmarks/meta_weights.py                                    # both development cases, 3 epochs
    python benchmarks/meta_weights.py --cases digits_uniform_0.4 --epochs 8

A full ``labelaudit train --meta-reweight`` run on 10k CIFAR images takes some 1,000–1,500 s on two
cores; its ``meta_weights.parquet`` (train.py, meta.MetaLog) says after a few epochs what the meta step
makes of each sample. This script trains each meta row of benchmarks/robust_training.py
(meta-reweight, weights+meta, meta-relabel, meta-reweight-momentum; the same trusted draw, 10 a class,
seed 0) for ``--epochs`` epochs on the development cases of that benchmark (never the held-out
CIFAR-10N worse_label case) and scores the per-sample mean meta weight against the case's truth:

- AUROC of −meta_weight for "mislabeled" (sklearn), next to the audit's own AUROC (its score column);
- the share of the weight mass on mislabeled samples, against their share of the data (equal: no
  separation at all);
- the last epoch's effective sample size of ω* (share of the batch) and its share of samples at weight 0;
- what the meta weight adds to the audit: the AUROC of fusion.py's label ceiling (a logistic
  regression on the robust z-scores, fitted on the truth, out of fold) of the audit's score and
  −meta_weight, against the same fit on the audit's score alone. A method never sees the truth, so
  this bounds any linear combination of the two; equal values mean the trusted batch's meta signal
  adds nothing such a combination could use to tell which labels are wrong.

``cifar10n_random1_10k`` (CIFAR-10N random_label1 human noise, robust_training.py) is a development
case too; it is not in the default list (``--cases`` adds it).

Writes benchmarks/results/meta_weights.json and .md.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from _cases import RESULTS, WORK, machine_meta, read_truth, replace_rows, save_results, timed
from fusion import label_ceiling
from labelaudit.robust import train
from robust_training import CASES as TRAIN_CASES
from robust_training import build_case, rows_for, scanned, trusted_manifest

DEFAULT_CASES = ("digits_uniform_0.4", "cifar10n_uniform_0.4_10k")  # robust_training.py's development cases
CASES = DEFAULT_CASES + ("cifar10n_random1_10k",)  # never the held-out cifar10n_worst_10k
ROWS = ("meta-reweight", "weights+meta", "meta-relabel", "meta-reweight-momentum")


def ceiling_auroc(columns: list[np.ndarray], noisy: np.ndarray) -> float:
    """AUROC of fusion.py's label ceiling: the out-of-fold fit on the truth of the columns together."""
    return float(roc_auc_score(noisy, label_ceiling(columns, noisy)))


def run(case: str, rows: list[str], epochs: int) -> list[dict]:
    folder, _ = build_case(case)
    options = TRAIN_CASES[case][1]
    audit = scanned(case, folder)  # the audit robust_training.py trains from
    truth = read_truth(folder)
    samples = pd.read_parquet(audit / "samples.parquet").set_index("path")
    audit_auroc = float(roc_auc_score(truth.loc[samples.index, "is_noisy"], samples["score"]))
    table = rows_for(40, TRAIN_CASES[case][2])
    out = []
    for row in rows:
        extra = dict(table[row])
        extra.pop("trusted")
        result, seconds = timed(train, folder / "images", audit=audit, out=None, epochs=epochs, seed=0,
                                cache_dir=str(WORK / "cache"), trusted=trusted_manifest(case, folder, 10, 0),
                                **options, **extra)
        w = result.meta_weights
        noisy = truth.loc[w["path"], "is_noisy"].to_numpy()
        mean_w = w["meta_weight"].to_numpy()
        score = samples.loc[w["path"], "score"].to_numpy()
        last = result.metrics["epochs"][-1]
        out.append({"case": case, "row": row, "epochs": epochs, "auroc_meta": float(roc_auc_score(noisy, -mean_w)),
                    "auroc_audit": audit_auroc, "auroc_fit_audit": ceiling_auroc([score], noisy),
                    "auroc_fit_audit_meta": ceiling_auroc([score, -mean_w], noisy),
                    "mass_on_mislabeled": float(mean_w[noisy].sum() / mean_w.sum()),
                    "share_mislabeled": float(noisy.mean()), "ess": last["meta_ess"],
                    "zero_share": last["meta_zero_share"], "seconds": round(seconds)})
        print(f"{case} {row:14s} AUROC {out[-1]['auroc_meta']:.4f} (audit {audit_auroc:.4f})  {seconds:.0f}s",
              flush=True)
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| case | row | epochs | AUROC of −meta weight | audit's AUROC | fit on audit / audit + meta "
             "(out of fold) | weight mass on mislabeled (their share) | ESS / B | share at 0 | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fit = f"{r['auroc_fit_audit']:.4f} / {r['auroc_fit_audit_meta']:.4f}" if "auroc_fit_audit" in r else "–"
        lines.append(f"| {r['case']} | {r['row']} | {r['epochs']} | {r['auroc_meta']:.4f} | {r['auroc_audit']:.4f} | "
                     f"{fit} | "
                     f"{r['mass_on_mislabeled']:.3f} ({r['share_mislabeled']:.3f}) | {r['ess']:.2f} | "
                     f"{r['zero_share']:.2f} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(DEFAULT_CASES), choices=list(CASES))
    ap.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--merge", action="store_true", help="keep the saved rows not run again")
    args = ap.parse_args()
    fresh = [r for case in args.cases for r in run(case, args.rows, args.epochs)]
    saved = []
    if args.merge and (RESULTS / "meta_weights.json").exists():
        import json

        saved = json.loads((RESULTS / "meta_weights.json").read_text())["rows"]
    rows = replace_rows(saved, fresh, key=lambda r: (r["case"], r["row"], r["epochs"]))
    save_results("meta_weights", {"meta": machine_meta(), "rows": rows}, markdown(rows))


if __name__ == "__main__":
    main()
