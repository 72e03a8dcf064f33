#!/usr/bin/env python3
"""The margin mixture's components and how early the proxy agreed with their labels.

    python benchmarks/no_class_components.py                  # the cases below
    python benchmarks/no_class_components.py digits_junk_0.13 cifar10n_uniform_0.1_50k

Reads the audits benchmarks/noise_rate.py leaves in benchmarks/work/<case>.noise-audit (run it first),
refits the margin mixture on their AUM (noise/mixture.py, as the scan does) and, for every component
(each sample to its most probable one), prints its mean margin, weight, whether the fit counts it
mislabeled or of no class, and its early agreement: the share of its samples' first epochs
(noise/mixture.py EARLY_EPOCHS, 2) with a positive margin (trajectories.parquet), which the no-class
rule reads, and the same over epochs 2–4. Images of no class carry labels chosen without regard to
the image, so a network agrees with them early about as often as chance (1/K); hard images of the
right class are agreed with more often. With the truth (benchmarks/work/<case>/truth.csv) each
component's share of mislabeled samples too. Writes benchmarks/results/no_class_components.json and .md.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from _cases import WORK, machine_meta, save_results
from labelaudit.audit.read import load_audit
from labelaudit.noise.mixture import EARLY_EPOCHS, fit_noise

CASES = ("digits_junk_0.13", "digits_chimera_0.13", "digits_degraded_sd16", "cifar10n_uniform_0.1_10k",
         "cifar10n_uniform_0.05_50k", "cifar10n_uniform_0.1_50k", "cifar10n_random1_50k")
LATER = (2, 4)  # a later window, for comparison


def components(name: str) -> dict:
    folder = WORK / f"{name}.noise-audit"
    audit = load_audit(folder)
    s = audit.samples
    given = pd.Index(audit.run.data.classes).get_indexer(s["given_label"].astype(str))
    early = audit.early_agreement()
    fit = fit_noise("margin", aul_scores=s["aul"].to_numpy(), aum_scores=s["aum"].to_numpy(), random_state=0,
                    given=given, early=early)
    d = fit.details
    t = pd.read_parquet(folder / "trajectories.parquet", columns=["sample_id", "epoch", "margin"])
    later = (t[t["epoch"].between(*LATER)].assign(agree=lambda f: f["margin"] > 0)
             .groupby("sample_id")["agree"].mean().reindex(s["sample_id"]).to_numpy())
    truth = WORK / name / "truth.csv"
    noisy = None
    if truth.is_file():
        t = pd.read_csv(truth).set_index("path")["is_noisy"]
        rel = audit.files().map(lambda f: str(Path(f).relative_to(WORK / name / "images")))
        noisy = t.reindex(rel.to_numpy()).to_numpy(dtype=np.float64)
    means, stds, weights = (np.asarray(d[k], dtype=np.float64) for k in ("means", "stds", "weights"))
    x = s["aum"].to_numpy()[:, None]
    member = (np.log(weights) - np.log(stds) - 0.5 * ((x - means) / stds) ** 2).argmax(axis=1)
    rows = [{"mean": float(means[c]), "weight": float(weights[c]), "mislabeled": bool(d["mislabeled"][c]),
             "no_class": bool(d["no_class"][c]), "early_agreement": float(np.mean(early[member == c])),
             "agreement_2_4": float(np.nanmean(later[member == c])),
             "truly_mislabeled": None if noisy is None else float(np.nanmean(noisy[member == c]))}
            for c in range(len(means)) if (member == c).any()]
    return {"case": name, "classes": len(audit.run.data.classes), "rate": float(fit.noise_rate), "components": rows}


def markdown(results: list[dict]) -> str:
    lines = [f"Margin-mixture components and their early agreement: the share of positive margins in epochs "
             f"1–{EARLY_EPOCHS} (what the no-class rule reads) and in epochs {LATER[0]}–{LATER[1]}; chance is 1/K "
             "(`python benchmarks/no_class_components.py`).", "",
             "| case | rate | component mean | weight | counted | truly mislabeled | early agreement | epochs "
             f"{LATER[0]}–{LATER[1]} |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for c in r["components"]:
            counted = "no class" if c["no_class"] else "mislabeled" if c["mislabeled"] else "clean"
            truly = "–" if c["truly_mislabeled"] is None else f"{c['truly_mislabeled']:.2f}"
            lines.append(f"| {r['case']} | {r['rate']:.3f} | {c['mean']:+.2f} | {c['weight']:.3f} | {counted} | {truly} | "
                         f"{c['early_agreement']:.3f} | {c['agreement_2_4']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    names = sys.argv[1:] or list(CASES)
    results = [components(n) for n in names if (WORK / f"{n}.noise-audit" / "run.json").exists()]
    print(markdown(results))
    save_results("no_class_components", {"meta": machine_meta(), "rows": results}, markdown(results))


if __name__ == "__main__":
    main()
