#!/usr/bin/env python3
"""Where a from-scratch scan's noise rate goes wrong: its two error terms, epoch by epoch, against the truth.

    python benchmarks/noise_rate.py --cases cifar10n_random1_10k      # the audit this reads
    python benchmarks/rate_terms.py --cases cifar10n_random1_10k cifar10n_random1_50k

A proxy network trained on the given labels disagrees with a sample's label where its margin is
negative. That share is the true rate plus the clean images the proxy still gets wrong (*hard clean*)
minus the mislabeled ones it has already learnt with their wrong label (*memorised*); the margin
mixture's sign rule (labelaudit/noise/mixture.py) reads the same two terms on the mean margin (AUM)
so far. For every ``--every``-th epoch of a finished audit (benchmarks/noise_rate.py leaves them in
benchmarks/work/<case>.noise-audit, trajectories included) this prints both terms as shares of all
samples, the last epoch's disagreement and the margin mixture's rate from the epochs so far (its
sign rule, before the undecided-component rule of noise/interval.py), next to the true rate; and
the confident joint of the last five epochs so far with its fall from the five before
(noise/confident.py's trajectory_rate: the scan takes it for the rate where it fell by under 15% of
itself and under 0.01). It
reads saved trajectories only: nothing is trained. Development cases only; the held-out sets are
not read. Writes benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import numpy as np

from _cases import LARGE_CASES, NOISE_RATE_CASES, WORK, build, chosen_cases, read_truth, run_and_save
from labelaudit.audit.read import load_audit
from labelaudit.noise.confident import STILL_FALLING, STILL_MOVING, WINDOW, trajectory_rate
from labelaudit.noise.mixture import early_agreement, fit_margin_mixture

DEV = {n: c for n, c in NOISE_RATE_CASES.items() if not c.held_out}
LARGE_DEV = {n: c for n, c in LARGE_CASES.items() if not c.held_out}
DEFAULT = ("cifar10n_uniform_0.05_10k", "cifar10n_uniform_0.1_10k", "cifar10n_random1_10k",
           "cifar10n_uniform_0.05_50k", "cifar10n_uniform_0.1_50k", "cifar10n_random1_50k")


def _terms(margin: np.ndarray, noisy: np.ndarray) -> dict:
    """Shares of all samples: negative margin, clean with a negative margin, mislabeled with a positive one."""
    negative = margin < 0
    n = len(margin)
    return {"negative": float(negative.mean()), "hard_clean": float((negative & ~noisy).sum() / n),
            "memorised": float((~negative & noisy).sum() / n)}


def run_case(name: str, every: int = 5) -> dict:
    folder = build({**DEV, **LARGE_DEV}[name])
    audit_dir = WORK / f"{name}.noise-audit"
    audit = load_audit(audit_dir)
    samples = audit.samples
    margin, loss = audit.trajectory("margin"), audit.trajectory("loss")  # (E, N) in samples.parquet's order
    if margin is None:
        raise SystemExit(f"{audit_dir}: no trajectories; run benchmarks/noise_rate.py --cases {name} first")
    truth = read_truth(folder)
    noisy = truth.loc[samples["path"].astype(str), "is_noisy"].to_numpy(dtype=bool)
    classes = audit.run.data.classes
    index = {c: k for k, c in enumerate(classes)}
    given = samples["given_label"].map(index).to_numpy(dtype=np.int64)
    predicted = samples["predicted_label"].map(index).to_numpy(dtype=np.int64)  # as the scan's, all epochs
    epochs = margin.shape[0]
    rows = []
    for e in sorted({*range(every, epochs + 1, every), 1, epochs}):
        so_far = margin[:e]
        fit = fit_margin_mixture(so_far.mean(axis=0), given=given, early=early_agreement(so_far), interval=False)
        joint = trajectory_rate(loss[:e], so_far, given, predicted, len(classes), rounds=0)
        rows.append({"epoch": e, "epoch_terms": _terms(margin[e - 1], noisy), "aum_terms": _terms(so_far.mean(axis=0), noisy),
                     "mixture_rate": fit.noise_rate, "undecided": int(fit.details.get("undecided_components", 0)),
                     "joint": None if joint is None else {"rate": joint.rate, "previous": joint.previous,
                                                          "fall": joint.fall, "settled": joint.settled}})
    return {"case": name, "held_out": False, "n": int(len(noisy)), "true_rate": float(noisy.mean()),
            "audit_rate": float(audit.run.summary["noise_rate"]), "epochs": epochs, "rows": rows}


def _joint(joint: dict | None) -> str:
    if joint is None:
        return "– | – |"
    points = joint["previous"] - joint["rate"]
    return f"{joint['rate']:.3f} | {joint['fall']:.0%}, {points:.3f}{' ✓' if joint['settled'] else ''} |"


def markdown(results: list[dict]) -> str:
    lines = ["| case | epoch | true rate | disagreement (epoch) | hard clean | memorised | AUM < 0 | hard clean (AUM) "
             "| memorised (AUM) | mixture so far | undecided | joint, last 5 | its fall |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            ep, am = row["epoch_terms"], row["aum_terms"]
            lines.append(f"| {r['case']} | {row['epoch']} | {r['true_rate']:.3f} | {ep['negative']:.3f} | "
                         f"{ep['hard_clean']:.3f} | {ep['memorised']:.3f} | {am['negative']:.3f} | {am['hard_clean']:.3f} | "
                         f"{am['memorised']:.3f} | {row['mixture_rate']:.3f} | {row['undecided']} | {_joint(row.get('joint'))}")
    lines.append("")
    lines.append(f"Shares of all samples. Disagreement = true rate + hard clean − memorised. Joint: the confident "
                 f"joint of the last {WINDOW} epochs so far, and how much it fell from the {WINDOW} before (✓: under "
                 f"{STILL_FALLING:.0%} of itself and under {STILL_MOVING:.2f}, where a scan ending there takes it for the "
                 f"rate). The audit's final rates: "
                 + "; ".join(f"{r['case']} {r['audit_rate']:.3f} for {r['true_rate']:.3f}" for r in results) + ".")
    return "\n".join(lines) + "\n"


def main() -> None:
    chosen = chosen_cases(__doc__, {n: c for n, c in {**DEV, **LARGE_DEV}.items() if n in DEFAULT}, "rate_terms",
                          extra={**DEV, **LARGE_DEV}, options={"--every": {"type": int, "default": 5}})
    every = chosen.options["every"]
    run_and_save(chosen, lambda name: run_case(name, every), markdown)


if __name__ == "__main__":
    main()
