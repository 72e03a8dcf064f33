#!/usr/bin/env python3
"""How much the noise-rate estimate depends on the proxy's seed, and what `scan --proxy-runs 3` makes
of it.

    python benchmarks/proxy_runs.py                       # the default cases (~20 min on 2 cores)
    python benchmarks/proxy_runs.py --cases digits_uniform_0.1 --merge
    python benchmarks/proxy_runs.py --runs 5 --tag proxy_runs_5

Each case is scanned once with ``proxy_runs=K`` (default 3; seeds 0..K-1, the case's documented
options). Rows: the true rate; the estimate (the first run's, as every scan reports it); each run's
estimate and their spread (max - min); the one-run 95% bootstrap interval (the first run's, refitted
from its AUM exactly as a one-run scan fits it) and the pooled interval `--proxy-runs` reports, each
marked when it holds the truth; the width of each; the scan's wall time. The question for a CI gate:
is the seed's spread larger than the one-run interval, which would make two scans of the same data
disagree by more than their intervals say? Development cases only by default; the held-out CIFAR-10N
worse_label set runs only when named. Writes benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import sys

from labelaudit import scan
from labelaudit.noise.mixture import fit_noise
from _cases import NOISE_RATE_CASES, WORK, build, case_label, chosen_cases, read_truth, run_and_save, timed

DEFAULT = ["digits_uniform_0.1", "digits_pair_0.3", "digits_asym_0.2", "digits_junk_0.13",
           "cifar10n_uniform_0.05_10k", "cifar10n_random1_10k"]
RUNS = 3


def run_case(name: str, runs: int = RUNS) -> dict:
    case = NOISE_RATE_CASES[name]
    folder = build(case)
    result, wall = timed(scan, folder / "images", out=None, cache_dir=str(WORK / "cache"), proxy_runs=runs,
                         **case.scan_options)
    s = result.samples.set_index("path").join(read_truth(folder), how="inner")
    true = float(s["is_noisy"].mean())
    index = {c: i for i, c in enumerate(result.classes)}
    seed = result.run["seed"]
    one = fit_noise(result.run["config"]["noise_model"], aul_scores=result.samples["aul"].to_numpy(),
                    aum_scores=result.samples["aum"].to_numpy(), random_state=seed,
                    given=result.samples["given_label"].map(index).to_numpy(), early=result.early_agreement()).interval
    pooled = result.summary["noise_rate_interval"]
    rates = result.summary["noise_rate_runs"]
    info = result.run["noise_model"]["interval"]["runs"]
    return {
        "case": name, "held_out": case.held_out, "true_rate": true, "est_rate": result.summary["noise_rate"],
        "runs": rates, "seeds": info["seeds"], "epochs_run": info["epochs_run"],
        "spread": float(max(rates) - min(rates)),
        "one_run_interval": list(one), "pooled_interval": list(pooled),
        "one_run_width": float(one[1] - one[0]), "pooled_width": float(pooled[1] - pooled[0]),
        "one_run_holds_truth": bool(one[0] <= true <= one[1]), "pooled_holds_truth": bool(pooled[0] <= true <= pooled[1]),
        "scan_s": wall, "options": case.scan_options,
    }


def _iv(iv: list[float], holds: bool) -> str:
    return f"[{iv[0]:.4f}, {iv[1]:.4f}]" + (" ✓" if holds else "")


def markdown(rows: list[dict]) -> str:
    lines = ["| case | true rate | estimate | each run | spread | one-run interval (width) | pooled interval "
             "(width) | scan s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {case_label(r)} | {r['true_rate']:.4f} | {r['est_rate']:.4f} | "
                     f"{', '.join(f'{x:.4f}' for x in r['runs'])} | {r['spread']:.4f} | "
                     f"{_iv(r['one_run_interval'], r['one_run_holds_truth'])} ({r['one_run_width']:.4f}) | "
                     f"{_iv(r['pooled_interval'], r['pooled_holds_truth'])} ({r['pooled_width']:.4f}) | "
                     f"{r['scan_s']:.0f} |")
    return "\n".join(lines) + "\n"  # ✓: the interval holds the true rate


def main() -> None:
    runs = RUNS
    if "--runs" in sys.argv:  # ours; the rest of the command line is the shared --cases/--tag/--merge
        i = sys.argv.index("--runs")
        runs = int(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    chosen = chosen_cases(__doc__, {n: NOISE_RATE_CASES[n] for n in DEFAULT}, "proxy_runs",
                          extra={n: c for n, c in NOISE_RATE_CASES.items() if n not in DEFAULT})
    run_and_save(chosen, lambda name: run_case(name, runs), markdown)


if __name__ == "__main__":
    main()
