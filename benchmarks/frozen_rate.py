#!/usr/bin/env python3
"""The noise rate of a frozen backbone's head (``--freeze``) on the development cases, at several sizes.

    python benchmarks/frozen_rate.py                         # every case (about 15 min on 2 cores)
    python benchmarks/frozen_rate.py --cases cifar10n_random1_10k@1000

With ``--freeze`` the rate is the confident joint's (labelaudit/noise/confident.py), read on the linear
head's own probabilities and on held-out ones (five heads, each trained without the fifth it
predicts), and their mean. This benchmark shows why the mean: per case, the true rate, the two
readings, their mean and its stated interval, and the estimates the frozen scan gave before (the
margin mixture's rate, and the head's disagreement with the given labels, which the rate was set to
where a mixture component straddled zero). A case ``name@n`` audits a seeded draw of n of the case's
images (a manifest; the same cached embeddings), to show how the readings move with the number of
samples against the embedding's 192 dimensions.

The backbones are benchmarks/backbones.py's (pretrained on data disjoint from the audit: CIFAR-10
images outside the audited 10,000 with their clean labels, MNIST for the digits). Only development
cases: the held-out CIFAR-10N worst set is measured by benchmarks/backbones.py. Writes
benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from _cases import NOISE_RATE_CASES, WORK, build, chosen_cases, read_truth, run_and_save
from backbones import cifar_backbone, mnist_backbone
from labelaudit import scan


@dataclass(frozen=True)
class FrozenCase:
    case: str  # a NOISE_RATE_CASES name
    n: int | None = None  # a seeded draw of this many images; None: all
    held_out: bool = False

    @property
    def name(self) -> str:
        return self.case if self.n is None else f"{self.case}@{self.n}"


CASES = {c.name: c for c in [
    FrozenCase("cifar10n_random1_10k", 1000), FrozenCase("cifar10n_random1_10k", 3000),
    *(FrozenCase(n) for n in ("cifar10n_random1_10k", "cifar10n_random2_10k", "cifar10n_random3_10k",
                              "cifar10n_uniform_0.05_10k", "cifar10n_uniform_0.1_10k", "cifar10n_uniform_0.4_10k",
                              "cifar10n_clean_10k")),
    FrozenCase("digits_uniform_0.2", 500),
    *(FrozenCase(n) for n in ("digits_uniform_0.2", "digits_asym_0.2", "digits_pair_0.1", "digits_uniform_0.05")),
]}


def run_case(name: str) -> dict:
    spec = CASES[name]
    folder = build(NOISE_RATE_CASES[spec.case])
    truth = read_truth(folder)
    weights = cifar_backbone() if spec.case.startswith("cifar") else mnist_backbone()
    options = {**NOISE_RATE_CASES[spec.case].scan_options, "model": "small", "weights": str(weights), "image_size": 32,
               "freeze": True, "cache_dir": str(WORK / "cache")}
    if spec.n is None:
        result = scan(folder / "images", out=None, **options)
    else:
        import pandas as pd

        draw = truth.reset_index().sample(n=spec.n, random_state=0)
        manifest = WORK / "frozen_rate" / f"{name}.csv"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"path": draw["path"], "label": draw["noisy_label"]}).to_csv(manifest, index=False)
        result = scan(manifest=manifest, root=folder / "images", out=None, **options)
    s = result.samples.set_index("path")
    true = float(truth.loc[s.index, "is_noisy"].mean())
    model = result.run["noise_model"]
    confident = model["confident_joint"]
    timings = result.run.timings
    return {"case": name, "held_out": False, "n": int(len(s)), "dim": result.run["backbone"]["embedding_dim"],
            "true_rate": true, "own": confident["own"], "held_out_reading": confident["held_out"],
            "rate": float(result.summary.noise_rate), "interval": list(result.summary.noise_rate_interval),
            "mixture": confident["rate_before"], "disagreement": 1.0 - float(result.run["summary"]["proxy_agreement"]),
            "train_s": timings.get("train_s"), "held_out_s": timings.get("rate_heads_s")}


def _err(row: dict, key: str) -> float:
    return abs(row[key] - row["true_rate"])


def markdown(rows: list[dict]) -> str:
    lines = ["Frozen heads (`--weights FILE --freeze`, otherwise default settings) on backbones pretrained on data "
             "disjoint from the audit (benchmarks/backbones.py); `case@n`: a seeded draw of n images; 2 CPU cores. "
             "own / held-out: the confident joint's readings; rate: their mean; mixture and disagreement: what the "
             "frozen scan's rate came from before.", "",
             "| case | images | true | own | held-out | **rate** (mean) [stated interval] | mixture | disagreement | "
             "head s + held-out heads s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        low, high = r["interval"]
        lines.append(f"| {r['case']} | {r['n']} | {r['true_rate']:.3f} | {r['own']:.3f} | {r['held_out_reading']:.3f} | "
                     f"**{r['rate']:.3f}** [{low:.3f}, {high:.3f}] | {r['mixture']:.3f} | {r['disagreement']:.3f} | "
                     f"{r['train_s']:.1f} + {r['held_out_s']:.1f} |")
    if len(rows) > 1:
        mean = {k: float(np.mean([_err(r, k) for r in rows])) for k in ("own", "held_out_reading", "rate", "mixture",
                                                                       "disagreement")}
        worst = {k: float(np.max([_err(r, k) for r in rows])) for k in mean}
        held = sum(r["interval"][0] <= r["true_rate"] <= r["interval"][1] for r in rows)
        lines += ["", f"Mean absolute error over the {len(rows)} cases (largest): own {mean['own']:.3f} "
                      f"({worst['own']:.3f}), held-out {mean['held_out_reading']:.3f} ({worst['held_out_reading']:.3f}), "
                      f"**mean of the two {mean['rate']:.3f} ({worst['rate']:.3f})**; before: the mixture "
                      f"{mean['mixture']:.3f} ({worst['mixture']:.3f}), the disagreement {mean['disagreement']:.3f} "
                      f"({worst['disagreement']:.3f}). The stated interval holds the truth in {held} of {len(rows)}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    np.seterr(all="ignore")
    run_and_save(chosen_cases(__doc__, CASES, "frozen_rate"), run_case, markdown)


if __name__ == "__main__":
    main()
