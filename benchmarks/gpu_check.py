#!/usr/bin/env python3
"""The GPU check: CIFAR-10N's worst human labels on all 50,000 CIFAR-10 training images (40.2% wrong),
scanned with the default settings, with ``--model resnet18``, and from weights (a ``small`` network's
state dict saved here, seeded, so nothing is downloaded) frozen and fine-tuned, on the device the
machine has. The weights rows check the device path of the backbone pass, the heads and the
neighbourhood score, not detection: the weights are untrained.

    python benchmarks/gpu_check.py                             # on a machine with one GPU, unattended
    python benchmarks/gpu_check.py --limit 2000 --epochs 3     # the same end to end on a CPU, in minutes
    python benchmarks/gpu_check.py --models small              # the default proxy alone

For each run it prints one JSON object, then writes benchmarks/results/<tag>.json and .md: the
device (and its name), the images trained per second, the wall time of every stage (run.json's
``timings``: list, load, train, score, report), peak GPU memory (``torch.cuda.max_memory_allocated``;
on a CPU the process's peak RSS instead), AUROC of the ranking against the true errors, and the
noise-rate estimate with its error. Nothing is downloaded: the images and the CIFAR-10N labels come
from ../shared/data through shared/bench/make_noisy.py (benchmarks/_cases.py builds them once into
benchmarks/work/), and the decode cache lives beside them, so a second run decodes nothing.

Budget: it is meant to finish in under 8 minutes on one recent GPU (the images are decoded on the
CPU first, about a minute for 50,000 on 16 cores). ``--budget-s`` (default 480) skips a run that
would start after that many seconds, and says so in its row, so an unattended run never overstays.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from _cases import LARGE_CASES, WORK, build, machine_meta, read_truth, save_results
from labelaudit import scan

CASE = LARGE_CASES["cifar10n_worst_50k"]
MODELS = ("small", "resnet18", "small:frozen", "small:fine-tuned")  # small: the default proxy; :…: from weights


def weights_file() -> Path:
    """A seeded, untrained ``small`` network's state dict: weights to start from without a download."""
    import torch

    from labelaudit.training.models import build_model

    path = WORK / "gpu_check_small_weights.pt"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(build_model("small", 10).state_dict(), path)
    return path


def subset(folder: Path, limit: int | None) -> tuple[Path, Path]:
    """(manifest, root) of the case's images: all of them, or the first ``limit`` rows of truth.csv
    (the set is shuffled by make_noisy.py, so a prefix keeps the classes and the noise)."""
    truth = read_truth(folder).reset_index()
    if limit is not None:
        truth = truth.iloc[:limit]
    manifest = WORK / f"gpu_check_{len(truth)}.csv"
    truth.assign(label=truth["noisy_label"])[["path", "label"]].to_csv(manifest, index=False)
    return manifest, folder / "images"


def peak_memory(device: str) -> dict:
    import torch

    if device.startswith("cuda"):
        return {"peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30}
    return {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}  # KiB on Linux


def run_one(model: str, manifest: Path, root: Path, truth, options: dict) -> dict:
    import torch

    network, _, mode = model.partition(":")
    out = WORK / f"gpu_check_{model.replace(':', '-')}.audit"
    if mode:
        options = {**options, "weights": str(weights_file()), "freeze": mode == "frozen"}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = scan(manifest=manifest, root=root, out=out, model=network, cache_dir=str(WORK / "cache"), **options)
    wall = time.perf_counter() - t0
    run = result.run
    s = result.samples.set_index("path")
    wrong = truth.loc[s.index, "is_noisy"].to_numpy()
    epochs = int(run["epochs_run"])
    train_s = float(run["timings"]["train_s"])
    est = float(result.summary.noise_rate)
    return {"model": model, "device": run["device"],
            "device_name": torch.cuda.get_device_name() if str(run["device"]).startswith("cuda") else "cpu",
            "n": int(len(s)), "epochs": epochs, "wall_s": wall, "timings": run["timings"],
            "train_images_per_s": len(s) * epochs / max(train_s, 1e-9),
            **peak_memory(str(run["device"])),
            "auroc": float(roc_auc_score(wrong, s["score"])), "true_rate": float(wrong.mean()),
            "noise_rate": est, "noise_rate_interval": list(result.summary.noise_rate_interval or []),
            "noise_rate_error": abs(est - float(wrong.mean())), "skipped": None}


def markdown(rows: list[dict]) -> str:
    lines = ["CIFAR-10N worst labels, default settings per proxy (benchmarks/gpu_check.py).", "",
             "| proxy | device | images | epochs | train img/s | list / load / train / score / report s | "
             "peak memory GiB | AUROC | noise rate (true) | error |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['model']} | – | – | – | – | skipped: {r['skipped']} | – | – | – | – |")
            continue
        t = r["timings"]
        stages = " / ".join(f"{t.get(k, 0.0):.1f}" for k in ("list_s", "load_s", "train_s", "score_s", "report_s"))
        memory = r.get("peak_gpu_memory_gib", r.get("peak_rss_gib"))
        lines.append(f"| {r['model']} | {r['device_name']} | {r['n']:,} | {r['epochs']} | "
                     f"{r['train_images_per_s']:,.0f} | {stages} | {memory:.2f} | {r['auroc']:.4f} | "
                     f"{r['noise_rate']:.4f} ({r['true_rate']:.4f}) | {r['noise_rate_error']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="scan only the first N images (a smoke run on a CPU)")
    ap.add_argument("--models", nargs="+", default=list(MODELS),
                    help="proxies to run, in order; NAME:frozen and NAME:fine-tuned start from untrained weights")
    ap.add_argument("--epochs", default=None, help="override the default epochs (auto)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget-s", type=float, default=480.0, help="start no run after this many seconds")
    ap.add_argument("--tag", default=None, help="results file name [gpu_check, or gpu_check_<limit>]")
    args = ap.parse_args()
    if args.limit is not None and args.limit < 100:
        ap.error(f"--limit {args.limit}: use at least 100 images")
    start = time.perf_counter()
    folder = build(CASE)
    truth = read_truth(folder)
    manifest, root = subset(folder, args.limit)
    options = {"device": args.device, **({"epochs": args.epochs} if args.epochs else {})}
    rows = []
    for model in args.models:
        if time.perf_counter() - start > args.budget_s:
            row = {"model": model, "skipped": f"the {args.budget_s:.0f} s budget was spent"}
        else:
            row = run_one(model, manifest, root, truth, options)
        rows.append(row)
        print(json.dumps(row), flush=True)
    tag = args.tag or ("gpu_check" if args.limit is None else f"gpu_check_{args.limit}")
    save_results(tag, {"meta": {**machine_meta(), "argv": sys.argv[1:], "total_s": time.perf_counter() - start},
                       "rows": rows}, markdown(rows))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
