#!/usr/bin/env python3
"""How long the final noise-model fit takes as the dataset grows: fit_margin_mixture with its bootstrap
interval on synthetic AUM values, with and without the large-N shortcuts (BIC on a draw of
mixture.SELECT_SAMPLES values, the m-out-of-n bootstrap).

    python benchmarks/mixture_scale.py                 # 10k, 50k, 100k, 1M values (~6 minutes on 2 cores)
    python benchmarks/mixture_scale.py --sizes 1000000 --no-full

The values: 10 classes whose clean margins are Gamma(4, 1.5) − 0.5 shifted by 0.3 per class (a mode per
class, a long tail of hard samples) and 8% mislabeled at N(−2.5, 1). "full" is the computation without
the shortcuts (SELECT_SAMPLES raised above N); below SELECT_SAMPLES the two are the same code path.
Rows: N, seconds with the bootstrap interval (the scan's final fit) and without it (what the
``--epochs auto`` check fits every epoch, on at most stopping.CHECK_SAMPLES = 50,000 values), the
estimate, its interval and the number of components. Writes
benchmarks/results/mixture_scale.json and .md.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from labelaudit.noise import mixture
from _cases import machine_meta, save_results

TRUE_RATE = 0.08


def values(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 10, n)
    noisy = rng.random(n) < TRUE_RATE
    aum = np.where(noisy, rng.normal(-2.5, 1.0, n), rng.gamma(4.0, 1.5, n) - 0.5 + 0.3 * cls)
    return aum, cls, float(noisy.mean())


def run(n: int, shortcut: bool) -> dict:
    aum, cls, true_rate = values(n)
    saved = mixture.SELECT_SAMPLES
    mixture.SELECT_SAMPLES = saved if shortcut else max(saved, n)
    try:
        t = time.perf_counter()
        mixture.fit_margin_mixture(aum, given=cls, interval=False)  # what the --epochs auto check fits
        check = time.perf_counter() - t
        t = time.perf_counter()
        fit = mixture.fit_margin_mixture(aum, given=cls)
        wall = time.perf_counter() - t
    finally:
        mixture.SELECT_SAMPLES = saved
    return {"n": n, "shortcut": shortcut and n > saved, "seconds": wall, "check_seconds": check,
            "true_rate": true_rate,
            "est_rate": fit.noise_rate, "interval": list(fit.interval), "n_components": fit.details["n_components"]}


def markdown(rows: list[dict]) -> str:
    lines = ["| N | path | seconds | without interval | true rate | estimate [95% interval] | components |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["interval"]
        lines.append(f"| {r['n']:,} | {'draw + m-out-of-n' if r['shortcut'] else 'full'} | {r['seconds']:.1f} | {r['check_seconds']:.1f} | "
                     f"{r['true_rate']:.4f} | {r['est_rate']:.4f} [{lo:.4f}, {hi:.4f}] | {r['n_components']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", type=int, default=[10_000, 50_000, 100_000, 1_000_000])
    ap.add_argument("--no-full", action="store_true", help="skip the computation without the shortcuts above SELECT_SAMPLES")
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        for shortcut in (True, False) if n > mixture.SELECT_SAMPLES and not args.no_full else (True,):
            rows.append(run(n, shortcut))
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    save_results("mixture_scale", {"machine": machine_meta(), "select_samples": mixture.SELECT_SAMPLES,
                                   "rows": rows}, markdown(rows))


if __name__ == "__main__":
    main()
