#!/usr/bin/env python3
"""The margin mixture's components and how early the proxy agreed with their labels.

    python benchmarks/no_class_components.py                  # the cases below
    python benchmarks/no_class_components.py digits_junk_0.13 cifar10n_uniform_0.1_50k

Reads the audits benchmarks/noise_rate.py leaves in benchmarks/work/<case>.noise-audit (run it first),
refits the margin mixture on their AUM (noise/mixture.py, as the scan does) and, for every component
(each sample to its most probable one), prints its mean margin, weight, whether the fit counts it
mislabeled or of no class, and its early agreement: the share of its samples whose margin was
positive in epochs 2–4 (trajectories.parquet). Images of no class carry labels chosen without regard
to the image, so a network agrees with them early about as often as chance (1/K); hard images of
the right class are agreed with more often. Writes benchmarks/results/no_class_components.json and .md.
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from _cases import WORK, machine_meta, save_results
from labelaudit.audit.read import load_audit
from labelaudit.noise.mixture import fit_noise

CASES = ("digits_junk_0.13", "digits_chimera_0.13", "cifar10n_uniform_0.1_10k", "cifar10n_uniform_0.05_50k",
         "cifar10n_uniform_0.1_50k")
EARLY = (2, 4)  # epochs whose margins say what the proxy agreed with before it memorised


def components(name: str) -> dict:
    folder = WORK / f"{name}.noise-audit"
    audit = load_audit(folder)
    s = audit.samples
    given = pd.Index(audit.run.data.classes).get_indexer(s["given_label"].astype(str))
    fit = fit_noise("margin", aul_scores=s["aul"].to_numpy(), aum_scores=s["aum"].to_numpy(), random_state=0,
                    given=given)
    d = fit.details
    t = pd.read_parquet(folder / "trajectories.parquet", columns=["sample_id", "epoch", "margin"])
    early = (t[t["epoch"].between(*EARLY)].assign(agree=lambda f: f["margin"] > 0)
             .groupby("sample_id")["agree"].mean().reindex(s["sample_id"]).to_numpy())
    means, stds, weights = (np.asarray(d[k], dtype=np.float64) for k in ("means", "stds", "weights"))
    x = s["aum"].to_numpy()[:, None]
    member = (np.log(weights) - np.log(stds) - 0.5 * ((x - means) / stds) ** 2).argmax(axis=1)
    rows = [{"mean": float(means[c]), "weight": float(weights[c]), "mislabeled": bool(d["mislabeled"][c]),
             "no_class": bool(d["no_class"][c]), "early_agreement": float(np.nanmean(early[member == c]))}
            for c in range(len(means)) if (member == c).any()]
    return {"case": name, "classes": len(audit.run.data.classes), "rate": float(fit.noise_rate), "components": rows}


def markdown(results: list[dict]) -> str:
    lines = [f"Margin-mixture components and their early agreement (positive margins in epochs {EARLY[0]}–{EARLY[1]}); "
             "chance is 1/K (benchmarks/no_class_components.py).", "",
             "| case | rate | component mean | weight | counted | early agreement |", "|---|---|---|---|---|---|"]
    for r in results:
        for c in r["components"]:
            counted = "no class" if c["no_class"] else "mislabeled" if c["mislabeled"] else "clean"
            lines.append(f"| {r['case']} | {r['rate']:.3f} | {c['mean']:+.2f} | {c['weight']:.3f} | {counted} | "
                         f"{c['early_agreement']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    names = sys.argv[1:] or list(CASES)
    results = [components(n) for n in names if (WORK / f"{n}.noise-audit" / "run.json").exists()]
    print(markdown(results))
    save_results("no_class_components", {"meta": machine_meta(), "rows": results}, markdown(results))


if __name__ == "__main__":
    main()
