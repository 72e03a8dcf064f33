#!/usr/bin/env python3
"""Spiked noise: a known share of uniform label noise added on purpose, to read off what mislabeled
samples look like in the very run that scores the others.

    python benchmarks/spiked.py                                   # the development cases (~20 min)
    python benchmarks/spiked.py --cases cifar10n_uniform_0.05_10k --merge

A candidate noise-rate estimator for issue 10, measured, not part of the scan. The margin mixture
(labelaudit.mixture) must guess the shape of the mislabeled samples' AUM distribution, and on CIFAR-10
with 5% uniform noise its negative component takes in the hard clean samples (docs/scores.md). Here
the shape is observed instead: a random ``--spike`` share δ of the samples (default 0.1) is given a
uniformly drawn *other* class, the default proxy trains on the spiked labels (``--epochs auto``, the
case's scan options), and the spiked samples' AUM distribution F_s stands for a mislabeled sample's.
Among the other samples, whose AUM distribution is G = (1 − η)·F_clean + η·F_mislabeled, the noise
rate is estimated by the mixture-proportion ratio

    η̂(q) = G(t_q) / q,  t_q = the q-quantile of the spiked samples' AUM,

which is exact when the dataset's own mislabeled samples look like the spikes (F_mislabeled = F_s,
i.e. uniform noise) and no clean sample scores below t_q; a clean tail below t_q inflates it, and
mislabeled samples that score higher than uniform noise (human noise falls on confusable images)
deflate it. AUM's threshold samples (Pleiss et al. 2020, Sec. 3) are the same idea with a fake extra
class, which measured worse here (docs/scores.md). Rows: the true rate of the unspiked samples, the
margin mixture on them (same run), η̂ at q = 0.1, 0.25, 0.5, the median AUM of the spikes and of the
truly mislabeled unspiked samples, and the epochs run. Writes benchmarks/results/spiked.json and .md.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from labelaudit.noise.mixture import fit_margin_mixture
from _cases import NOISE_RATE_CASES, case_label, chosen_cases, load_case, run_and_save, timed

QUANTILES = (0.1, 0.25, 0.5)
DEFAULT_CASES = {n: NOISE_RATE_CASES[n] for n in (
    "digits_none", "digits_uniform_0.1", "digits_pair_0.3", "digits_asym_0.2",
    "cifar10n_clean_10k", "cifar10n_uniform_0.05_10k", "cifar10n_uniform_0.1_10k", "cifar10n_random1_10k")}


def spike_labels(labels: np.ndarray, k: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(spiked labels, mask): a random ``share`` of the samples moved to a uniformly drawn other class."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, int(round(share * n)), replace=False)] = True
    out = np.asarray(labels, dtype=np.int64).copy()
    out[mask] = (out[mask] + rng.integers(1, k, int(mask.sum()))) % k
    return out, mask


def ratio_estimates(aum: np.ndarray, spiked: np.ndarray, quantiles=QUANTILES) -> dict:
    """η̂(q) = share of the unspiked samples at or below the spikes' q-quantile of AUM, divided by q."""
    a_s, a_n = aum[spiked], aum[~spiked]
    return {f"{q:g}": float(np.mean(a_n <= np.quantile(a_s, q)) / q) for q in quantiles}


def run_case(name: str, share: float, seed: int) -> dict:
    lc = load_case(NOISE_RATE_CASES[name])
    given, spiked = spike_labels(lc.ds.labels, len(lc.ds.classes), share, seed)
    dyn, wall = timed(lc.train, labels=given)
    aum = dyn.margin.mean(axis=0)
    noisy = lc.is_noisy.astype(bool)[~spiked]
    mixture = fit_margin_mixture(aum[~spiked], interval=False)
    return {"case": name, "held_out": False, "spike": share, "seed": seed, "n": int(len(aum)),
            "true_rate": float(noisy.mean()), "mixture_rate": mixture.noise_rate, "model_range": mixture.model_range,
            "ratio": ratio_estimates(aum, spiked), "epochs_run": int(dyn.margin.shape[0]),
            "spike_median_aum": float(np.median(aum[spiked])),
            "mislabeled_median_aum": float(np.median(aum[~spiked][noisy])) if noisy.any() else None,
            "train_s": wall}


def markdown(rows: list[dict]) -> str:
    qs = [f"{q:g}" for q in QUANTILES]
    lines = ["| case | true rate | margin mixture (error) | " + " | ".join(f"η̂(q={q}) (error)" for q in qs)
             + " | spikes' median AUM | mislabeled median AUM | epochs |",
             "|---|---|---|" + "---|" * len(qs) + "---|---|---|"]
    for r in rows:
        t = r["true_rate"]
        med = "–" if r["mislabeled_median_aum"] is None else f"{r['mislabeled_median_aum']:.2f}"
        lines.append(f"| {case_label(r)} | {t:.3f} | {r['mixture_rate']:.3f} ({r['mixture_rate'] - t:+.3f}) | "
                     + " | ".join(f"{r['ratio'][q]:.3f} ({r['ratio'][q] - t:+.3f})" for q in qs)
                     + f" | {r['spike_median_aum']:.2f} | {med} | {r['epochs_run']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--spike", type=float, default=0.1, help="share of samples given a wrong class on purpose")
    own.add_argument("--seed", type=int, default=0, help="which samples are spiked, and to which class")
    args, rest = own.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    chosen = chosen_cases(__doc__, DEFAULT_CASES, "spiked", extra=NOISE_RATE_CASES)
    run_and_save(chosen, lambda name: run_case(name, args.spike, args.seed), markdown)


if __name__ == "__main__":
    main()
