#!/usr/bin/env python3
"""How to fuse AUL, AUM and LIMIT into ``score``: AUROC of each single score and each fusion rule.

    python benchmarks/fusion.py                         # development cases (never the held-out set)
    python benchmarks/fusion.py --cases digits_pair_0.2
    python benchmarks/fusion.py --held-out              # measure the chosen rule on CIFAR-10N worst

Trains the proxy with the LIMIT pair once per case (scan defaults, the default β) and keeps the
per-sample scores in benchmarks/work/<case>.scores.b<β>.a<average epochs>.npz (no .a part for
0, q's last weights), so the rules are compared on the same
scores. Every rule in labelaudit.scores.FUSIONS is scored, plus the single scores and two label-free
weightings kept here for comparison (WEIGHTED: the spectral meta-learner, a tied 2-D mixture), and
the ceiling of any linear fusion (a logistic regression fitted out-of-fold with the true labels). The
rule is chosen on the development cases; the held-out row is measured after the choice.
Writes benchmarks/results/fusion.json and .md.
"""
from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from _cases import (CASES, DEV_CASES, NOISE_RATE_CASES, WORK, cached_arrays, case_label, load_case, machine_meta,
                    save_results, timed)
from labelaudit.dynamics.limit import LimitSettings
from labelaudit.scores import FUSIONS, aul, aum, oriented, rank_fraction, robust_z

ALL = {**DEV_CASES, **NOISE_RATE_CASES, **CASES}
DEFAULT_CASES = ["digits_uniform_0.4", "digits_pair_0.2", "digits_asym_0.3", "digits_uniform_0.1",
                 "cifar10n_uniform_0.1_10k", "cifar10n_random1_10k"]
COMBOS = (("aul", "aum"), ("aum", "limit"), ("aul", "aum", "limit"), ("aum", "limit_area"),
          ("aul", "aum", "limit_area"))
SCORER = {"aul": "aul", "aum": "aum", "limit": "limit", "limit_area": "limit"}  # column → scorer (its orientation)


def _oriented(name: str, values: np.ndarray) -> np.ndarray:
    return oriented(SCORER[name], values)


def _rank_centred(c: np.ndarray) -> np.ndarray:
    return rank_fraction(c) - 0.5


def spectral_weights(columns: list[np.ndarray]) -> np.ndarray:
    """Weights of the spectral meta-learner (Parisi et al., PNAS 2014): for scores that are independent
    given the true label, the off-diagonal covariance of their centred ranks is rank one,
    C_ij = v_i v_j with v_i ∝ AUROC_i − ½, so v_i = sqrt(C_ij C_ik / C_jk) for three scores."""
    c = np.cov(np.array([_rank_centred(x) for x in columns]))
    return np.array([np.sqrt(abs(c[i, j] * c[i, k] / c[j, k])) for i, j, k in ((0, 1, 2), (1, 0, 2), (2, 0, 1))])


def _spectral(columns: list[np.ndarray]) -> np.ndarray:
    """Σ v_i · centred rank_i with the spectral meta-learner's weights (three scores only)."""
    v = spectral_weights(columns)
    return sum(w * _rank_centred(x) for w, x in zip(v, columns))


def _mixture_2d(columns: list[np.ndarray]) -> np.ndarray:
    """Log-odds of the high component of a 2-component Gaussian mixture with one shared covariance on
    the robust z-scores of all the scores together: linear discriminant weights learned without labels."""
    from sklearn.mixture import GaussianMixture

    x = np.column_stack([robust_z(c) for c in columns])
    g = GaussianMixture(2, covariance_type="tied", random_state=0, reg_covar=1e-6).fit(x)
    hi = int(np.argmax(g.means_.sum(axis=1)))
    log_p = g._estimate_weighted_log_prob(x)
    return log_p[:, hi] - log_p[:, 1 - hi]


# Label-free weightings measured against the library's rules, kept out of FUSIONS: neither beat
# AUM alone on the CIFAR-10 cases (docs/scores.md). rule: (function, the combinations it scores;
# the spectral weights need three scores)
WEIGHTED = {"spectral": (_spectral, [c for c in COMBOS if len(c) == 3]),
            "mixture-2d": (_mixture_2d, [c for c in COMBOS if c != ("aul", "aum")])}


def label_ceiling(columns: list[np.ndarray], is_noisy: np.ndarray) -> np.ndarray:
    """Out-of-fold P(mislabeled) of a logistic regression on the robust z-scores, fitted *with the
    true labels* (5 folds): not a rule a scan could use, but the ceiling of any linear fusion, to tell
    a fusion rule that wastes what the scores hold from scores that hold nothing more together."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    x = np.column_stack([robust_z(c) for c in columns])
    return cross_val_predict(LogisticRegression(max_iter=2000), x, is_noisy, cv=5, method="predict_proba")[:, 1]


def case_scores(name: str, refresh: bool, beta: float, average: float) -> tuple[dict, np.ndarray, dict]:
    """{aul, aum, limit, limit_area} per sample, is_noisy, and timings for one case (cached as .npz).
    ``limit`` is the scan's limit_distance (eval mode, after training); ``limit_area`` the mean of the
    training-pass distance over the epochs (trajectories.parquet's limit_distance column). ``average``:
    LimitSettings.average_epochs (0, q's last weights, keeps the cache name it had before averaging)."""
    def train() -> dict:
        lc = load_case(ALL[name])
        _, proxy_s = timed(lc.train)
        dyn, limit_s = timed(lc.train, limit=LimitSettings(beta=beta, average_epochs=average))
        return {"aul": aul(dyn.loss), "aum": aum(dyn.margin), "limit": dyn.limit_distance.astype(np.float64),
                "limit_area": dyn.limit_epochs.mean(axis=0).astype(np.float64), "is_noisy": lc.is_noisy,
                "proxy_s": proxy_s, "limit_s": limit_s}

    z = cached_arrays(WORK / f"{name}.scores.b{beta:g}{'' if average == 0 else f'.a{average:g}'}.npz", train, refresh)
    return {k: z[k] for k in SCORER}, z["is_noisy"], {k: float(z[k]) for k in ("proxy_s", "limit_s")}


def run_case(name: str, refresh: bool, beta: float, average: float) -> dict:
    scores, is_noisy, times = case_scores(name, refresh, beta, average)
    row = {"case": name, "held_out": ALL[name].held_out, "beta": beta, "average_epochs": average, **times}
    for s in scores:
        row[s] = roc_auc_score(is_noisy, _oriented(s, scores[s]))
    rules = {**{rule: (fn, COMBOS) for rule, fn in FUSIONS.items()}, **WEIGHTED}
    for rule, (fn, combos) in rules.items():
        for combo in combos:
            row[f"{rule}({'+'.join(combo)})"] = roc_auc_score(is_noisy, fn([_oriented(s, scores[s]) for s in combo]))
    for combo in (("aum", "limit"), ("aul", "aum", "limit")):
        row[f"ceiling, with labels({'+'.join(combo)})"] = roc_auc_score(
            is_noisy, label_ceiling([_oriented(s, scores[s]) for s in combo], is_noisy))
    return row


def markdown(rows: list[dict]) -> str:
    cols = [k for k in rows[0] if k not in ("case", "held_out", "beta", "average_epochs", "proxy_s", "limit_s")]
    dev = [r for r in rows if not r["held_out"]]
    lines = ["AUROC per case; last row: mean over the development cases.", "",
             "| score | " + " | ".join(case_label(r) for r in rows)
             + " | dev mean |", "|" + "---|" * (len(rows) + 2)]
    for c in cols:
        mean = np.mean([r[c] for r in dev]) if dev else float("nan")
        lines.append(f"| {c} | " + " | ".join(f"{r[c]:.4f}" for r in rows) + f" | {mean:.4f} |")
    lines += ["", "| case | proxy training s | with LIMIT s | ratio |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['proxy_s']:.1f} | {r['limit_s']:.1f} | {r['limit_s'] / r['proxy_s']:.2f}× |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=DEFAULT_CASES, choices=[n for n in ALL if not ALL[n].held_out])
    ap.add_argument("--held-out", action="store_true", help="add the held-out CIFAR-10N worst case")
    ap.add_argument("--refresh", action="store_true", help="retrain even when scores are cached")
    ap.add_argument("--beta", type=float, default=LimitSettings.beta, help="LIMIT's β (default: the scan's)")
    ap.add_argument("--average-epochs", type=float, default=LimitSettings.average_epochs,
                    help="horizon of q's moving average that scores (default: the scan's; 0 = q's last weights)")
    ap.add_argument("--tag", default="fusion")
    args = ap.parse_args()
    names = args.cases + (["cifar10n_worst_10k"] if args.held_out else [])
    rows = []
    for name in names:
        rows.append(run_case(name, args.refresh, args.beta, args.average_epochs))
        print(name, {k: round(v, 4) for k, v in rows[-1].items() if isinstance(v, float)}, flush=True)
    save_results(args.tag, {"meta": machine_meta(), "rows": rows}, markdown(rows))


if __name__ == "__main__":
    main()
