#!/usr/bin/env python3
"""Transition-matrix estimators on the development sets: train the proxy once per case (keeping
the softmax of every epoch), then compare the estimators of T on the same run.

    python benchmarks/transition.py
    python benchmarks/transition.py --cases digits_asym_0.3 digits_pair_0.2

Variants: Patrini's anchors (α = 0.97 and the argmax) on probabilities averaged over every epoch,
over the first half or third of the run, or from the last epoch alone; the audit's count estimate
with the margin mixture's posteriors, giving each mislabeled sample to the most probable other class
(hard, the default) or spreading it over the other classes by the all-epoch or first-half
probabilities (soft). Rows: transition_row_l1 (as ../shared/bench/evaluate.py
computes it), the per-class noise-rate error in the given-label view (class_rate_mae), and for pair
noise whether every true flow is its row's largest off-diagonal entry. Never runs on the held-out
CIFAR-10N worse_label set. Writes benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from labelaudit.noise.mixture import fit_margin_mixture, noise_table
from labelaudit.config import parse_epochs
from labelaudit.dynamics.proxy import ProxySettings
from labelaudit.scores import aum
from labelaudit.training.loop import Hook
from labelaudit.noise.transition import anchor_transition, count_transition, given_label_rates
from _cases import DEV_CASES, save_results, load_case, timed


def _true_transition(clean: np.ndarray, given: np.ndarray, k: int) -> np.ndarray:
    joint = np.zeros((k, k))
    ok = clean >= 0
    np.add.at(joint, (clean[ok], given[ok]), 1.0)
    return joint / np.maximum(joint.sum(axis=1, keepdims=True), 1.0)


def _flows_found(est: np.ndarray, true: np.ndarray) -> bool:
    """Every row with a true off-diagonal flow has it as the estimate's largest off-diagonal entry."""
    est, true = est.copy(), true.copy()
    np.fill_diagonal(est, -1.0)
    np.fill_diagonal(true, -1.0)
    rows = true.max(axis=1) > 0
    return bool((est.argmax(axis=1)[rows] == true.argmax(axis=1)[rows]).all())


def true_prior(t: np.ndarray, given_counts: np.ndarray) -> np.ndarray:
    """π solving ``πᵀ T = given distribution`` (least squares, clipped to the simplex)."""
    q = np.asarray(given_counts, dtype=np.float64)
    q = q / q.sum()
    pi, *_ = np.linalg.lstsq(np.asarray(t, dtype=np.float64).T, q, rcond=None)
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum() if pi.sum() > 0 else q


class _EpochProbs(Hook):
    """Every sample's softmax in every epoch's training pass, (E, N, K): the probability windows this
    benchmark compares (the scan itself keeps only their running mean)."""

    def __init__(self, n: int, k: int, epochs: int):
        self.probs = torch.zeros((epochs, n, k))

    def after_step(self, epoch, ids, x, y, out) -> None:
        self.probs[epoch, ids.cpu()] = torch.softmax(out.logits.detach().float(), dim=1).cpu()


def run_case(name: str, settings: ProxySettings) -> list[dict]:
    case = DEV_CASES[name]
    loaded = load_case(case)
    ds, y, clean = loaded.ds, loaded.is_noisy, loaded.clean
    k, given = len(ds.classes), np.asarray(ds.labels)
    probs = _EpochProbs(len(ds.labels), k, settings.epochs)
    dyn, train_s = timed(loaded.train, settings, hooks=[probs])
    e = dyn.loss.shape[0]
    epoch_probs = probs.probs[:e].numpy()  # (E, N, K)
    windows = {"all": epoch_probs.mean(0), "first_half": epoch_probs[:(e + 1) // 2].mean(0),
               "first_third": epoch_probs[:max(1, e // 3)].mean(0), "last": epoch_probs[-1]}
    p = fit_margin_mixture(aum(dyn.margin)).p_mislabeled
    mixture_rates = noise_table(p, given, ds.classes).query("scope == 'class'")["noise_rate"].to_numpy()
    true_t = _true_transition(clean, given, k)
    true_rates = np.array([y[given == j].mean() for j in range(k)])
    given_counts = np.bincount(given, minlength=k)
    variants = {}
    for window in ("all", "first_half", "first_third", "last"):
        variants[f"anchors q0.97 {window}"] = anchor_transition(windows[window], 0.97)[0]
    variants["anchors argmax first_half"] = anchor_transition(windows["first_half"], 1.0)[0]
    for window in ("all", "first_half"):
        variants[f"counts soft {window}"] = count_transition(p, given, windows[window], hard=False)
    variants["counts hard all (default)"] = count_transition(p, given, windows["all"])
    variants["mean(anchors all, counts soft all)"] = (variants["anchors q0.97 all"] + variants["counts soft all"]) / 2
    rows = []
    for variant, est in variants.items():
        implied = given_label_rates(est, true_prior(est, given_counts))
        rows.append({
            "case": name, "variant": variant,
            "transition_row_l1": float(np.abs(est - true_t).sum(axis=1).mean()),
            "class_rate_mae_implied": float(np.abs(implied - true_rates).mean()),
            "class_rate_mae_mixture": float(np.abs(mixture_rates - true_rates).mean()),
            "flows_found": _flows_found(est, true_t) if name.startswith("digits_pair") else None,
            "train_s": train_s,
        })
    return rows


def markdown(rows: list[dict]) -> str:
    cols = ["transition_row_l1", "class_rate_mae_implied", "class_rate_mae_mixture", "flows_found"]
    lines = ["| case | variant | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for r in rows:
        cells = ["–" if r[c] is None else str(r[c]) if isinstance(r[c], bool) else f"{r[c]:.4f}" for c in cols]
        lines.append(f"| {r['case']} | {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(DEV_CASES), choices=list(DEV_CASES))
    ap.add_argument("--epochs", default="auto", help="auto (the scan's default) or a number")
    ap.add_argument("--tag", default="transition")
    args = ap.parse_args()
    max_epochs, stop_from = parse_epochs(args.epochs)
    settings = ProxySettings(epochs=max_epochs, stop_from=stop_from)
    rows = []
    for name in args.cases:
        case_rows = run_case(name, settings)
        rows += case_rows
        print(markdown(case_rows), flush=True)
    save_results(args.tag, rows, markdown(rows))


if __name__ == "__main__":
    main()
