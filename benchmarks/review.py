#!/usr/bin/env python3
"""The review step with a simulated reviewer: how well N verified answers estimate the noise rate.

    python benchmarks/review.py                                    # the development cases
    python benchmarks/review.py --cases digits_uniform_0.05 cifar10n_random1_10k
    python benchmarks/review.py --sizes 200 --draws 100 --tag review_200x100  # the 200-answer numbers, 5× the draws

Each case is scanned with default settings (the audit benchmarks/noise_rate.py leaves in
benchmarks/work/<case>.noise-audit is reused), then for N = 50, 100, 200, 400 answers and 20 draws
each, a reviewer answers the drawn samples from truth.csv (``none`` where the truth has no class).
Per case and N: the mean absolute error of the dataset rate and the share of draws whose 95% interval
holds the truth, for labelaudit's stratified design (labelaudit/review) and, as the baseline, for a
simple random sample of the same size (the same estimator with the whole audit as one stratum: its
share wrong, with a Jeffreys interval); for the design, the flags' precision estimate against the
true precision of the scan's flags; and after the answers are applied (p(mislabeled) recalibrated,
labelaudit/review/apply.py), the flags' stated precision and recall (the recalibrated p's own
account) against their true values. Writes benchmarks/results/review.json and .md.
"""
from __future__ import annotations

import numpy as np

from _cases import NOISE_RATE_CASES, WORK, build, chosen_cases, read_truth, run_and_save
from labelaudit import scan
from labelaudit.audit.read import is_audit_dir, load_audit
from labelaudit.review.apply import recalibrated
from labelaudit.noise.sampling import Design, draw, strata
from labelaudit.noise.stratified import domain_rate, estimate

DEV = {n: NOISE_RATE_CASES[n] for n in ("digits_uniform_0.05", "digits_uniform_0.1", "digits_uniform_0.2",
                                        "digits_pair_0.1", "digits_asym_0.2", "digits_none",
                                        "cifar10n_uniform_0.05_10k", "cifar10n_uniform_0.1_10k",
                                        "cifar10n_random1_10k", "cifar10n_random2_10k", "cifar10n_random3_10k")}
SIZES = (50, 100, 200, 400)
DRAWS = 20
OPTIONS = {"--sizes": dict(type=int, nargs="+", default=list(SIZES), help="numbers of answers"),
           "--draws": dict(type=int, default=DRAWS, help="draws per number of answers")}


def _audit(name: str):
    case = DEV[name]
    folder = build(case)
    out = WORK / f"{name}.noise-audit"
    if not is_audit_dir(out):
        scan(folder / "images", out=out, **case.scan_options)
    return load_audit(out), read_truth(folder)


def run_case(name: str, sizes=SIZES, draws: int = DRAWS) -> dict:
    audit, truth = _audit(name)
    s = audit.samples
    t = truth.loc[s["path"]]
    wrong = t["is_noisy"].to_numpy()
    none = (t["clean_label"] == "").to_numpy()
    flags = s["is_label_issue"].to_numpy(dtype=bool)
    design = strata(s["rank"].to_numpy(), s["p_mislabeled"].to_numpy(), flags)
    one_stratum = Design(np.zeros(len(s), dtype=np.int64), np.array([len(s)]), np.array([wrong.mean()]))
    rate = float(wrong.mean())
    threshold = float(audit.run.config.get("threshold", 0.5))
    true_precision = float(wrong[flags].mean()) if flags.any() else None
    rows = []
    for n in sizes:
        err, cover, p_err, srs_err, srs_cover, stated_err, recall_err, n_flagged = [], 0, [], [], 0, [], [], []
        for seed in range(draws):
            picked = draw(design, n, seed=seed)["row"].to_numpy()
            e = estimate(design, picked, wrong[picked], none=none[picked], flags=flags, seed=seed)
            err.append(abs(e.rate.value - rate))
            p_new, _ = recalibrated(s, design, picked, wrong[picked], e.rate.value)
            new_flags = p_new > threshold
            n_flagged.append(int(new_flags.sum()))
            if new_flags.any():
                stated_err.append(abs(float(p_new[new_flags].mean()) - float(wrong[new_flags].mean())))
                recall_err.append(abs(float(p_new[new_flags].sum() / p_new.sum())
                                      - float(wrong[new_flags].sum() / max(wrong.sum(), 1))))
            cover += e.rate.low <= rate <= e.rate.high
            if e.precision is not None and true_precision is not None:
                p_err.append(abs(e.precision.value - true_precision))
            srs = np.random.default_rng(10_000 + seed).choice(len(s), size=min(n, len(s)), replace=False)
            plain = domain_rate(one_stratum, srs, wrong[srs], seed=seed)  # the same estimator, one stratum
            srs_err.append(abs(plain.value - rate))
            srs_cover += plain.low <= rate <= plain.high
        rows.append({"n": n, "mae": float(np.mean(err)), "coverage": cover / draws,
                     "precision_mae": float(np.mean(p_err)) if p_err else None,
                     "srs_mae": float(np.mean(srs_err)), "srs_coverage": srs_cover / draws,
                     "recalibrated_flagged": float(np.mean(n_flagged)),
                     "stated_precision_mae": float(np.mean(stated_err)) if stated_err else None,
                     "stated_recall_mae": float(np.mean(recall_err)) if recall_err else None})
    return {"case": name, "held_out": False, "draws": draws, "n_samples": int(len(s)), "true_rate": rate,
            "audit_rate": float(audit.summary.noise_rate), "flagged": int(flags.sum()),
            "true_precision": true_precision, "by_n": rows}


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown(rows: list[dict]) -> str:
    draws = sorted({r.get("draws", DRAWS) for r in rows})
    lines = [f"Simulated reviewer, {' / '.join(map(str, draws))} draws per N. MAE: mean absolute error of the dataset rate; coverage: "
             "share of draws whose 95% interval holds the truth; SRS: a simple random sample of the same size.", "",
             "Flags after the answers: samples flagged by the recalibrated p(mislabeled) (mean over the draws), "
             "and the mean absolute error of their stated precision and recall.", "",
             "| case | true rate | audit's estimate | N | MAE (design) | coverage | MAE (SRS) | coverage (SRS) "
             "| scan's flags: true precision | its MAE | flags after | stated precision MAE | stated recall MAE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for b in r["by_n"]:
            lines.append(f"| {r['case']} | {r['true_rate']:.4f} | {r['audit_rate']:.4f} | {b['n']} | {b['mae']:.4f} | "
                         f"{b['coverage']:.0%} | {b['srs_mae']:.4f} | {b['srs_coverage']:.0%} | "
                         f"{_num(r['true_precision'])} | {_num(b['precision_mae'])} | {b['recalibrated_flagged']:.0f} | "
                         f"{_num(b['stated_precision_mae'])} | {_num(b['stated_recall_mae'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    chosen = chosen_cases(__doc__, DEV, "review", options=OPTIONS)
    run_and_save(chosen, lambda name: run_case(name, chosen.options["sizes"], chosen.options["draws"]), markdown)


if __name__ == "__main__":
    main()
