#!/usr/bin/env python3
"""Pretrained backbones against the proxy trained from scratch, without downloading any weights.

    python benchmarks/backbones.py                                  # CIFAR and digits (about 20 min on 2 cores, and
                                                                    # about 12 min once to pretrain the backbones)
    python benchmarks/backbones.py --cases cifar10n_random1_10k     # one case

No ImageNet weights can be fetched here, so the benchmark pretrains its own backbones, on data
disjoint from what it audits, with labelaudit's own ``train`` (plain cross-entropy, one-cycle
schedule) and saves their state dicts:

- CIFAR: the ``small`` network trained for 30 epochs on the CIFAR-10 training images that are not
  among the 10,000 audited (about 40,000, told apart by their JPEG bytes), with their clean labels: the
  "model from an earlier, curated release" case. 2,000 of them are held out to measure it, and 30
  epochs were chosen over 15 by that accuracy (0.837 against 0.829). It audits the 10,000 with
  CIFAR-10N worst labels and with random_label1 labels.
- digits: the ``small`` network trained on MNIST's 60,000 training images (../shared/data/mnist), a
  transfer across datasets, auditing the scikit-learn digits noise cases.

Per case, four rows: from scratch (the default scan, benchmarks/noise_rate.py's audit reused), fine-tuned
(``--weights FILE``, at its default learning rate, a tenth of the from-scratch 0.05), fine-tuned at
the from-scratch 0.05, and frozen (``--weights FILE --freeze``). Each row gives the AUROC of the
default ranking (with ``--weights`` the neighbourhood score on the backbone's embeddings, computed
before any fine-tuning, fused with AUM) and of AUM alone (the ``aum`` column of the same audit: the
fusion changes the ranking, not the training), the noise-rate estimate and its error, the wall time of
the scan, and the backbone pass (``embed_s``), the training (``train_s``) and the heads the rate is read
from (``rate_heads_s``, docs/scores.md) apart. Writes
benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from _cases import NOISE_RATE_CASES, LARGE_CASES, WORK, build, chosen_cases, read_truth, run_and_save
from labelaudit import scan
from labelaudit.audit.read import is_audit_dir, load_audit
from labelaudit.robust import train

CIFAR_CASES = ("cifar10n_worst_10k", "cifar10n_random1_10k")
DIGITS_CASES = ("digits_uniform_0.2", "digits_asym_0.2", "digits_pair_0.1", "digits_uniform_0.05")
ALL_CASES = {n: NOISE_RATE_CASES[n] for n in CIFAR_CASES + DIGITS_CASES}
PRETRAIN_EPOCHS = {"cifar": 30, "digits": 4}
PRETRAIN_HELD_OUT = 2000  # CIFAR pretraining images held out to measure the backbone
MODES = ("scratch", "fine-tuned", "fine-tuned, lr 0.05", "frozen")


def _digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def cifar_backbone() -> Path:
    """``small`` trained on the CIFAR-10 training images outside the audited 10,000, clean labels, with
    PRETRAIN_HELD_OUT of them (a seeded draw) held out to measure it: its metrics.json holds that accuracy."""
    out = WORK / "backbones" / f"cifar_small_e{PRETRAIN_EPOCHS['cifar']}"
    if (out / "model.pt").exists():
        return out / "model.pt"
    full = build(LARGE_CASES["cifar10n_worst_50k"])  # all 50,000 images; truth.csv has the clean labels
    audited = build(NOISE_RATE_CASES["cifar10n_worst_10k"])
    held = {_digest(audited / "images" / p) for p in read_truth(audited).index}
    truth = read_truth(full).reset_index()
    keep = [p for p in truth["path"] if _digest(full / "images" / p) not in held]
    rows = truth.set_index("path").loc[keep]
    pretrain = rows.reset_index().assign(label=rows["clean_label"].to_numpy())[["path", "label"]]
    pretrain = pretrain.sample(frac=1.0, random_state=0)
    folder = WORK / "backbones"
    folder.mkdir(parents=True, exist_ok=True)
    pretrain.iloc[PRETRAIN_HELD_OUT:].to_csv(folder / "cifar_pretrain_fit.csv", index=False)
    pretrain.iloc[:PRETRAIN_HELD_OUT].to_csv(folder / "cifar_pretrain_held_out.csv", index=False)
    train(manifest=folder / "cifar_pretrain_fit.csv", root=full / "images",
          eval_manifest=folder / "cifar_pretrain_held_out.csv", eval_root=full / "images", out=out, model="small",
          epochs=PRETRAIN_EPOCHS["cifar"], image_size=32, cache_dir=str(WORK / "cache"))
    return out / "model.pt"


def backbone_accuracy(weights: Path) -> float | None:
    """The backbone's accuracy on its own held-out images (None where it held none out)."""
    import json

    final = json.loads((weights.parent / "metrics.json").read_text()).get("final", {})
    return final.get("eval_accuracy")


def mnist_backbone() -> Path:
    """``small`` trained on MNIST's 60,000 training images (written as PNGs by make_noisy.py once)."""
    import subprocess
    import sys

    from _cases import SHARED

    out = WORK / "backbones" / "mnist_small"
    if (out / "model.pt").exists():
        return out / "model.pt"
    data = WORK / "backbones" / "mnist_train"
    if not (data / "manifest.csv").exists():
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_noisy.py"), str(data), "--source",
                        str(SHARED / "data" / "mnist" / "mnist_train.npz"), "--noise", "none"], check=True,
                       stdout=subprocess.DEVNULL)
    train(data / "images", out=out, model="small", epochs=PRETRAIN_EPOCHS["digits"], image_size=32,
          augment="crop", cache_dir=str(WORK / "cache"))
    return out / "model.pt"


def _row(mode: str, result, truth) -> dict:
    s = result.samples.set_index("path")
    wrong = truth.loc[s.index, "is_noisy"].to_numpy()
    est = float(result.summary.noise_rate)
    run = result.run
    timings = dict(run.timings)
    backbone = run.extra.get("backbone") or {}
    return {"mode": mode, "auroc": float(roc_auc_score(wrong, s["score"])),
            "auroc_aum": float(roc_auc_score(wrong, -s["aum"])), "scorers": list(run["scores"]["ran"]),
            "noise_rate": est,
            "true_rate": float(wrong.mean()), "abs_error": abs(est - float(wrong.mean())),
            "scan_s": float(sum(timings.values())), "embed_s": timings.get("embed_s"), "train_s": timings.get("train_s"),
            "rate_heads_s": timings.get("rate_heads_s"),
            "embeddings": backbone.get("embeddings"), "epochs": run.epochs_run}


def run_case(name: str) -> dict:
    case = ALL_CASES[name]
    folder = build(case)
    truth = read_truth(folder)
    weights = cifar_backbone() if name.startswith("cifar") else mnist_backbone()
    rows = []
    scratch = WORK / f"{name}.noise-audit"
    if not is_audit_dir(scratch):
        scan(folder / "images", out=scratch, cache_dir=str(WORK / "cache"), **case.scan_options)
    rows.append(_row("scratch", load_audit(scratch), truth))
    base = {**case.scan_options, "model": "small", "weights": str(weights), "image_size": 32,
            "cache_dir": str(WORK / "cache")}
    for mode, extra in (("fine-tuned", {}), ("fine-tuned, lr 0.05", {"lr": 0.05}), ("frozen", {"freeze": True})):
        out = WORK / "backbones" / f"{name}.{mode.replace(', ', '-').replace(' ', '')}.audit"
        rows.append(_row(mode, scan(folder / "images", out=out, **base, **extra), truth))
    return {"case": name, "held_out": False, "backbone": str(weights), "backbone_accuracy": backbone_accuracy(weights),
            "rows": rows}


def _num(x, fmt="{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def markdown(results: list[dict]) -> str:
    accuracy = {r["backbone"]: r.get("backbone_accuracy") for r in results}
    held = "; ".join(f"`{Path(b).parent.name}` {a:.3f}" for b, a in accuracy.items() if a is not None)
    lines = ["Backbones pretrained here on data disjoint from the audit (benchmarks/backbones.py): CIFAR — `small` "
             "on ~38,000 other CIFAR-10 training images, clean labels; digits — `small` on MNIST train."
             + (f" Accuracy on the backbone's own held-out images: {held}." if held else ""), "",
             "With weights the rate is read from linear heads on the pretrained embeddings (the confident joint, "
             "docs/scores.md), the same for fine-tuned and frozen; their training is timed apart (rate heads).", "",
             "| case | proxy | scores | AUROC | AUROC, AUM alone | noise rate (true) | abs. error | scan s | "
             "backbone pass s | head / proxy training s | rate heads s | epochs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            lines.append(f"| {r['case']} | {row['mode']} | {'+'.join(row['scorers'])} | {row['auroc']:.4f} | "
                         f"{row['auroc_aum']:.4f} | {row['noise_rate']:.4f} "
                         f"({row['true_rate']:.4f}) | {row['abs_error']:.4f} | {row['scan_s']:.0f} | "
                         f"{_num(row['embed_s'])} | {_num(row['train_s'])} | {_num(row.get('rate_heads_s'))} | "
                         f"{row['epochs']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    np.seterr(all="ignore")
    run_and_save(chosen_cases(__doc__, ALL_CASES, "backbones"), run_case, markdown)


if __name__ == "__main__":
    main()
