#!/usr/bin/env python3
"""labelaudit scan next to the standard cleanlab recipe, on the same data, network and epochs.

    pip install -e ".[bench]"            # cleanlab: a benchmark dependency, never a runtime one
    python benchmarks/vs_cleanlab.py
    python benchmarks/vs_cleanlab.py --cases digits_uniform_0.4

cleanlab's recipe (its documented workflow for image data): 5-fold cross-validated out-of-sample
``pred_probs`` from the same proxy network, trained with the same settings and epochs per fold as the
scan's proxy, then ``cleanlab.filter.find_label_issues`` (the flagged set),
``cleanlab.rank.get_label_quality_scores`` (the ranking; lower = more suspicious) and
``cleanlab.count.num_label_issues`` / N (its noise-rate estimate). Both sides start from the same
decoded images in memory (the decode cache is warm for the scan, and cleanlab's folds reuse the
arrays), so the times compare training and scoring, not JPEG decoding; a short untimed training
first takes the process's one-time costs off whichever tool runs first (warm_up). Rows: AUROC, precision,
recall, noise-rate error and wall time of each, and labelaudit's time as a share of cleanlab's.
Writes benchmarks/results/vs_cleanlab.json and .md.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from _cases import CASES, WORK, evaluate, load_case, machine_meta, merge_saved, save_results
from labelaudit import scan
from labelaudit.training.loop import Hook, autocast_for, batched_logits, device_images, device_labels
from labelaudit.dynamics.proxy import ProxySettings, train_proxy

DEFAULT_CASES = ["digits_uniform_0.4", "digits_pair_0.2", "cifar10n_worst_10k"]
FOLDS = 5


def cross_validated_probs(ds, settings: ProxySettings, seed: int = 0) -> np.ndarray:
    """Out-of-sample softmax for every sample: train the proxy on 4/5, predict the other 1/5 (eval mode,
    un-augmented), for each of the 5 folds."""
    cpu = torch.device("cpu")
    images, labels = device_images(ds.images, cpu), device_labels(ds.labels, cpu)
    k = len(ds.classes)
    probs = np.zeros((len(labels), k), dtype=np.float64)
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for fold, (train_idx, test_idx) in enumerate(folds.split(np.zeros(len(labels)), ds.labels)):
        tr, te = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
        trained = _Trained()
        train_proxy(images[tr], labels[tr], k, settings, device=cpu, hooks=[trained])
        logits = batched_logits(trained.model, images[te], trained.normalise, 512, autocast_for(cpu))
        probs[test_idx] = torch.softmax(logits.float(), dim=1).numpy()
    return probs


class _Trained(Hook):
    """Keeps the network the loop trains (in place) and the fold's normaliser, to predict held-out folds."""

    def start(self, model, batches) -> None:
        self.model, self.normalise = model, batches.normalise


def warm_up(ds, settings: ProxySettings) -> None:
    """One short untimed training (2 epochs on at most 512 images) before either tool is timed: the
    first training in a process pays one-time costs (oneDNN kernel creation, allocator growth: three
    digits scans in one process took 16.9, 14.6 and 15.9 s, a one-off measurement), which would
    otherwise go to whichever tool runs first."""
    cpu = torch.device("cpu")
    n = min(512, len(ds.labels))
    train_proxy(device_images(ds.images[:n], cpu), device_labels(ds.labels[:n], cpu), len(ds.classes),
                dataclasses.replace(settings, epochs=2, stop_from=None), device=cpu)


def run_case(name: str) -> dict:
    import cleanlab
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    case = CASES[name]
    loaded = load_case(case)  # decodes once (warm cache afterwards)
    folder = WORK / name
    truth_noisy = loaded.is_noisy.astype(bool)
    true_rate = float(truth_noisy.mean())

    warm_up(loaded.ds, ProxySettings(**case.scan_options))

    # --- labelaudit scan, end to end (warm cache)
    out = WORK / f"{name}.vs-cleanlab"
    t = time.perf_counter()
    result = scan(folder / "images", out=out, cache_dir=str(WORK / "cache"), **case.scan_options)
    la_s = time.perf_counter() - t
    ev = evaluate(out, folder / "truth.csv")
    la = {"auroc": ev["auroc"], "precision": ev["precision"], "recall": ev["recall"],
          "noise_rate": ev["noise_rate_est"], "noise_rate_error": ev["noise_rate_abs_err"], "wall_s": la_s}

    # --- cleanlab: 5-fold CV pred_probs with the same proxy and epochs per fold (the epochs the scan ran)
    settings = ProxySettings(epochs=result.run["epochs_run"], stop_from=None, **case.scan_options)
    t = time.perf_counter()
    probs = cross_validated_probs(loaded.ds, settings)
    labels = np.asarray(loaded.ds.labels)
    issues = find_label_issues(labels, probs)
    quality = get_label_quality_scores(labels, probs)
    n_issues = num_label_issues(labels, probs)
    cl_s = time.perf_counter() - t
    cl = {"auroc": float(roc_auc_score(truth_noisy, -quality)),
          "precision": float(precision_score(truth_noisy, issues, zero_division=0)),
          "recall": float(recall_score(truth_noisy, issues, zero_division=0)),
          "noise_rate": float(n_issues / len(labels)),
          "noise_rate_error": float(abs(n_issues / len(labels) - true_rate)),
          "wall_s": cl_s, "version": cleanlab.__version__}
    row = {"case": name, "n": int(len(labels)), "true_noise_rate": true_rate, "labelaudit": la, "cleanlab": cl,
           "time_ratio": la_s / cl_s, "auroc_delta": la["auroc"] - cl["auroc"],
           "epochs": settings.epochs, "model": settings.model, "folds": FOLDS}
    row["criteria"] = {"time_at_most_a_third": bool(row["time_ratio"] <= 1 / 3),
                       "auroc_within_0.01": bool(row["auroc_delta"] >= -0.01),
                       "smaller_noise_rate_error": bool(la["noise_rate_error"] < cl["noise_rate_error"])}
    print(f"{name}: labelaudit AUROC {la['auroc']:.4f} in {la_s:.0f}s, cleanlab {cl['auroc']:.4f} in {cl_s:.0f}s",
          flush=True)
    return row


def markdown(results: list[dict]) -> str:
    lines = ["| case | tool | AUROC | precision | recall | noise rate (true) | noise-rate error | wall s | time ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for tool in ("labelaudit", "cleanlab"):
            m = r[tool]
            ratio = f"{r['time_ratio']:.2f}" if tool == "labelaudit" else "1"
            lines.append(f"| {r['case']} | {tool} | {m['auroc']:.4f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                         f"{m['noise_rate']:.3f} ({r['true_noise_rate']:.3f}) | {m['noise_rate_error']:.3f} | "
                         f"{m['wall_s']:.0f} | {ratio} |")
    lines += ["", "| case | labelaudit time ≤ 1/3 of cleanlab's | AUROC ≥ cleanlab's − 0.01 | smaller noise-rate error |",
              "|---|---|---|---|"]
    for r in results:
        c = r["criteria"]
        lines.append(f"| {r['case']} | {'yes' if c['time_at_most_a_third'] else 'no'} | "
                     f"{'yes' if c['auroc_within_0.01'] else 'no'} | {'yes' if c['smaller_noise_rate_error'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=DEFAULT_CASES, choices=sorted(CASES))
    ap.add_argument("--merge", action="store_true",
                    help="keep the saved rows of the cases not run now (re-run one case whose timing was disturbed)")
    args = ap.parse_args()
    results = [run_case(name) for name in args.cases]
    if args.merge:
        results = merge_saved("vs_cleanlab", results, key=lambda r: r["case"], field="results")
    save_results("vs_cleanlab", {"meta": machine_meta(), "results": results}, markdown(results))


if __name__ == "__main__":
    main()
