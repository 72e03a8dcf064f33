#!/usr/bin/env python3
"""What the audit buys: held-out accuracy of ``labelaudit train`` with each method, over seeds.

    python benchmarks/robust_training.py                              # digits uniform 0.4, 3 seeds
    python benchmarks/robust_training.py --cases cifar10n_worst_10k   # CIFAR-10N worst, CIFAR-10 test set
    python benchmarks/robust_training.py --rows plain weights --seeds 0
    python benchmarks/robust_training.py --rows drop+meta --tag side; ... --combine side   # parallel runs

Cases:
- ``digits_uniform_0.4``: make_noisy.py digits with 40% uniform noise and ``--holdout 400``: the model
  trains on the 1,397 noisy samples and is evaluated on the 400 clean held-out ones.
- ``cifar10n_worst_10k``: the CIFAR-10N worse_label 10k subset, evaluated on the CIFAR-10 test set
  (../shared/data/cifar10n/images_test.zip, clean labels; extracted once under benchmarks/work/).
- ``cifar10n_uniform_0.4_10k``: the same 10k images with their clean labels and 40% uniform noise
  (make_noisy.py), the same test set: a development stand-in for the held-out worst case, where
  settings for CIFAR are chosen.
- ``cifar10n_random1_10k``: the same 10k images with the CIFAR-10N random_label1 human labels (17%
  wrong), the same test set: human noise for development (benchmarks/meta_weights.py).

Each case is scanned once (scan defaults plus the case's options) and every row trains a fresh
model from that audit. Rows: plain CE, weights, drop, relabel, forward, backward, SLN, SLN+EMA,
SLN+EMA+LC (as the paper writes ω, and reversed), an oracle trained on the clean labels, and with
10 trusted labels per class, meta re-weighting (also with the virtual step along the optimiser's
momentum, meta-reweight-momentum) and meta re-labeling (IEG; for CIFAR-10N the trusted
images are training images outside the 10k subset, with their clean labels), alone and on top of the
audit's weights or its kept samples (weights+meta, drop+meta), the former also with each
sample's meta weight averaged over the epochs (weights+meta-avg, ``--meta-average 0.8``); IEG's whole
step (ieg: meta re-labeling with the consistency loss and the probe mixup, ``--meta-kl 20 --meta-mixup
5``) and its parts (meta-relabel+kl, meta-relabel+mixup, meta-reweight+mixup); and the
audit's weights or drop from a scan calibrated on 10 verified labels a class of the case's own
images (weights+trusted-scan, drop+trusted-scan; one scan per seed, benchmarks/trusted.py's draw).
Test accuracy is reported as mean ± std over the seeds, with wall time; the trusted rows are also
compared with the audit's weights without a trusted set. Writes
benchmarks/results/robust_training.json and .md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from _cases import (CIFAR, CIFAR_DATA, DIGITS, RESULTS, SHARED, WORK, machine_meta, read_truth, replace_rows,
                    save_results, timed)
from labelaudit import scan
from labelaudit.robust import train
from trusted import trusted_manifest as in_data_manifest

CASES = {
    # name: (make_noisy args, scan/train options, SLN σ (the paper: 1 for symmetric noise, 0.5 otherwise))
    "digits_uniform_0.4": (DIGITS + ("--noise", "uniform:0.4", "--holdout", "400"), {"augment": "crop"}, 1.0),
    "cifar10n_worst_10k": (CIFAR + ("--noise", "column:worse_label"), {}, 0.5),
    # development stand-in for the held-out worst case: the same 10k images, their clean labels, 40% uniform noise
    "cifar10n_uniform_0.4_10k": (CIFAR + ("--noise", "uniform:0.4"), {}, 1.0),
    # human noise for development (CIFAR-10N random_label1, 17%; noise_rate.py's development case)
    "cifar10n_random1_10k": (CIFAR + ("--noise", "column:random_label1"), {}, 0.5),
}


def rows_for(epochs: int, sigma: float) -> dict[str, dict]:
    """The methods compared, as train() options. Label correction starts at 60% of the epochs."""
    lc = max(1, int(0.6 * epochs))
    return {
        "plain": {}, "weights": {"weights": True}, "drop": {"drop_issues": True},
        "relabel": {"relabel": True}, "forward": {"correction": "forward"}, "backward": {"correction": "backward"},
        "sln": {"sln": sigma}, "sln+ema": {"sln": sigma, "ema": 0.999},
        "sln+ema+lc": {"sln": sigma, "ema": 0.999, "label_correction": lc},
        "sln+ema+lc-reverse": {"sln": sigma, "ema": 0.999, "label_correction": lc, "lc_weighting": "reverse"},
        "oracle": {"clean": True},
        # a trusted set of 10 verified labels per class (issue: trusted set); CIFAR: held-out training images
        "meta-reweight": {"trusted": 10, "meta_reweight": True},
        "meta-relabel": {"trusted": 10, "meta_relabel": True},
        # the virtual step along the optimiser's momentum and weight decay (IEG Sec. 4.3, --meta-momentum)
        "meta-reweight-momentum": {"trusted": 10, "meta_reweight": True, "meta_momentum": True},
        # L2R on the audit-weighted losses, and on the audit's kept samples (meta.py)
        "weights+meta": {"trusted": 10, "meta_reweight": True, "weights": True},
        # the same with each sample's meta weight averaged over its visits (train --meta-average, decay 0.8)
        "weights+meta-avg": {"trusted": 10, "meta_reweight": True, "weights": True, "meta_average": 0.8},
        "drop+meta": {"trusted": 10, "meta_reweight": True, "drop_issues": True},
        # IEG's whole training step (Algorithm 1): meta re-labeling + re-weighting, the consistency loss
        # (Eq. 4) and the probe mixup (Eq. 9), with the paper's CIFAR weights k = 20, p = 5 (Sec. 5.2)
        "ieg": {"trusted": 10, "meta_relabel": True, "meta_kl": 20.0, "meta_mixup": 5.0},
        # its parts, for the ablation in docs/trusted.md (run there at --epochs 10)
        "meta-relabel+kl": {"trusted": 10, "meta_relabel": True, "meta_kl": 20.0},
        "meta-relabel+mixup": {"trusted": 10, "meta_relabel": True, "meta_mixup": 5.0},
        "meta-reweight+mixup": {"trusted": 10, "meta_reweight": True, "meta_mixup": 5.0},
        # the audit's weights from a scan calibrated on 10 verified labels a class of the data's own
        # images (benchmarks/trusted.py's draw: the calibration needs verified *and* given labels), no meta step
        "weights+trusted-scan": {"trusted_scan": 10, "weights": True},
        "drop+trusted-scan": {"trusted_scan": 10, "drop_issues": True},
    }


def trusted_manifest(name: str, folder: Path, per_class: int, seed: int) -> Path:
    """``per_class`` verified labels per class, drawn with ``seed``. CIFAR-10N: training images that are
    not in the case (held out), with their clean labels, extracted once under benchmarks/work/. Digits:
    the case's own training images with their clean labels."""
    if not name.startswith("cifar"):
        return in_data_manifest(folder, per_class, seed)
    out = WORK / f"cifar10_trusted_{per_class}_s{seed}"
    manifest = out / "trusted.csv"
    if manifest.exists():
        return manifest
    used = {Path(p).name for p in read_truth(folder).index}
    labels = pd.read_csv(CIFAR_DATA / "labels_train.csv")
    labels = labels[~labels["path"].map(lambda p: Path(p).name).isin(used)]
    rng = np.random.default_rng(seed)
    picks = pd.concat(rows.iloc[rng.choice(len(rows), size=per_class, replace=False)]
                      for _, rows in labels.groupby("clean_label", sort=True))
    rows = []
    with zipfile.ZipFile(CIFAR_DATA / "images_train.zip") as z:
        for path, label in zip(picks["path"], picks["clean_label"]):
            target = out / label / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(path))
            rows.append((f"{label}/{Path(path).name}", label))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(manifest, index=False)
    return manifest


def build_case(name: str) -> tuple[Path, Path]:
    """(case folder, held-out folder with clean labels)."""
    args = CASES[name][0]
    out = WORK / f"{name}.robust"
    if not (out / "truth.csv").exists():
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_noisy.py"), str(out), *args], check=True,
                       stdout=subprocess.DEVNULL)
    if (out / "holdout").is_dir():
        return out, out / "holdout"
    test = WORK / "cifar10_test"
    if not test.is_dir():  # CIFAR-10 test set, clean labels, as an image folder
        labels = pd.read_csv(CIFAR_DATA / "labels_test.csv")
        with zipfile.ZipFile(CIFAR_DATA / "images_test.zip") as z:
            for path, label in zip(labels["path"], labels["label"]):
                target = test / label / Path(path).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(path))
    return out, test


def clean_manifest(folder: Path) -> Path:
    """A manifest of the case's training images with their clean labels (the oracle row)."""
    path = folder / "clean_manifest.csv"
    if not path.exists():
        truth = read_truth(folder).reset_index()
        truth = truth[truth["clean_label"] != ""]
        pd.DataFrame({"path": truth["path"], "label": truth["clean_label"]}).to_csv(path, index=False)
    return path


def scanned(name: str, folder: Path, out: Path | None = None, **extra) -> Path:
    """The case's audit folder (``folder/audit`` unless ``out``), scanned once with the case's options."""
    out = folder / "audit" if out is None else out
    if not (out / "run.json").exists():
        scan(folder / "images", out=out, cache_dir=str(WORK / "cache"), **CASES[name][1], **extra)
    return out


def run_case(name: str, rows: list[str], seeds: list[int], epochs: int):
    """Yields one result per row as soon as its seeds have run."""
    folder, held_out = build_case(name)
    options, sigma = CASES[name][1], CASES[name][2]
    cache = str(WORK / "cache")
    audit = scanned(name, folder)
    table = rows_for(epochs, sigma)
    for row in rows:  # in the order asked for, so the rows that matter most can run first
        extra = dict(table[row])
        clean = extra.pop("clean", False)
        per_class = extra.pop("trusted", 0)
        scan_trusted = extra.pop("trusted_scan", 0)
        accs, times = [], []
        for seed in seeds:
            data = {"manifest": clean_manifest(folder), "root": folder / "images"} if clean else \
                {"data": folder / "images", "audit": audit}
            if per_class:
                data["trusted"] = trusted_manifest(name, folder, per_class, seed)
            if scan_trusted:  # an audit of its own: the scan calibrated on this seed's in-data trusted draw
                data["audit"] = scanned(name, folder, folder / f"audit-trusted-{scan_trusted}-s{seed}",
                                        trusted=in_data_manifest(folder, scan_trusted, seed))
            result, seconds = timed(train, **data, out=None, eval_data=held_out, cache_dir=cache, epochs=epochs,
                                    seed=seed, **options, **extra)
            times.append(seconds)
            accs.append(result.final_accuracy)
            print(f"{name:22s} {row:12s} seed {seed}: {accs[-1]:.4f}  {times[-1]:.0f}s", flush=True)
        yield {"case": name, "row": row, "options": extra, "seeds": seeds, "accuracies": accs,
               "mean": float(np.mean(accs)), "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
               "wall_s": float(np.mean(times)), "epochs": epochs}


TRUSTED_ROWS = {row for row, opts in rows_for(40, 1.0).items() if opts.get("trusted") or opts.get("trusted_scan")}


def _versus(r: dict, base: dict | None) -> tuple[str, str]:
    """(difference in points, whether it exceeds two standard deviations of either row) against ``base``."""
    if base is None or r is base:
        return "–", "–"
    d = r["mean"] - base["mean"]
    return f"{d * 100:+.2f} pts", "yes" if d > 2 * max(r["std"], base["std"]) else "no"


def markdown(results: list[dict]) -> str:
    """Per case, every row against plain CE and, for the rows with a trusted set, against the audit's
    weights without one (the trusted-set issue's comparison)."""
    lines = []
    for case in dict.fromkeys(r["case"] for r in results):
        rs = [r for r in results if r["case"] == case]
        plain = next((r for r in rs if r["row"] == "plain"), None)
        weights = next((r for r in rs if r["row"] == "weights"), None)
        lines += [f"**{case}** ({rs[0]['epochs']} epochs, seeds {', '.join(map(str, rs[0]['seeds']))})", "",
                  "| method | held-out accuracy | vs plain CE | > 2 std? | vs weights (trusted rows) | > 2 std? "
                  "| wall s / run |", "|---|---|---|---|---|---|---|"]
        for r in rs:
            vs_plain = _versus(r, plain)
            vs_weights = _versus(r, weights) if r["row"] in TRUSTED_ROWS else ("–", "–")
            lines.append(f"| {r['row']} | {r['mean']:.2%} ± {r['std']:.2%} | {' | '.join(vs_plain)} | "
                         f"{' | '.join(vs_weights)} | {r['wall_s']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=["digits_uniform_0.4"], choices=list(CASES))
    ap.add_argument("--rows", nargs="*", default=list(rows_for(40, 1.0)), choices=list(rows_for(40, 1.0)))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--tag", default="robust_training")
    ap.add_argument("--merge", action="store_true", help="keep the other rows of an earlier results file; "
                                                          "rows run now replace theirs")
    ap.add_argument("--combine", nargs="+", metavar="TAG",
                    help="run nothing: fold the rows of these results files (runs made in parallel under other "
                         "--tag names) into --tag's file, theirs replacing its rows of the same case and method")
    args = ap.parse_args()
    order = list(rows_for(args.epochs, 1.0))
    earlier = RESULTS / f"{args.tag}.json"
    kept = []
    if (args.merge or args.combine) and earlier.exists():
        kept = json.loads(earlier.read_text())["results"]

    def merged(old: list[dict], new: list[dict]) -> list[dict]:  # new replaces old's rows of the same case and method
        out = replace_rows(old, new, key=lambda r: (r["case"], r["row"]))
        return sorted(out, key=lambda r: (r["case"], order.index(r["row"])))

    def save(results: list[dict]) -> None:
        save_results(args.tag, {"meta": machine_meta(), "results": results}, markdown(results))

    if args.combine:
        for tag in args.combine:
            kept = merged(kept, json.loads((RESULTS / f"{tag}.json").read_text())["results"])
        save(kept)
        return
    results: list[dict] = []
    for name in args.cases:
        for result in run_case(name, args.rows, args.seeds, args.epochs):
            results.append(result)  # saved after every row, so a stopped run keeps what it finished
            save(merged(kept, results))

if __name__ == "__main__":
    main()
