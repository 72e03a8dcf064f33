#!/usr/bin/env python3
"""How many proxy epochs: a fixed 15, a fixed 30, or ``--epochs auto`` (15 to 30, stopping at the
onset of memorisation, noise/stopping.py's memorisation_check).

    python benchmarks/epochs.py                      # every development case, then the held-out one
    python benchmarks/epochs.py --no-held-out

Each case trains the proxy once for 30 epochs at a constant learning rate and keeps every epoch's
margins, losses and predicted classes (in benchmarks/work/<case>.run30.npz: a second run replays
them without training). A run
of E epochs is the first E epochs of that run (same seed, same batches, same augmentation: the
learning rate never changes), and ``--epochs auto`` stops before epoch E + 1 when
``memorisation_check`` on the first E epochs says so — so all three settings are read from one run.
Rows: AUROC of AUM and the margin mixture's noise-rate estimate (the scan's default noise model) at
15 epochs, at the epoch auto stops, and at 30; a second table gives the estimate on the first e
epochs for e = 3, 6, …, 30 (``memorisation_check`` at every epoch from 2, with the training pass's
agreement and the undecided components, in the JSON's ``by_epoch``): whether a group of mislabeled
samples stays below zero or is memorised into the clean side as the run goes on; a third splits the
auto stop's error into the posterior mass on clean samples and the mislabeled samples left out. The held-out CIFAR-10N worse_label case is measured
with the rule already chosen on the others, never used to choose it.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from labelaudit.noise.mixture import early_agreement, fit_margin_mixture
from labelaudit.dynamics.proxy import AUTO_EPOCHS, ProxySettings
from labelaudit.noise.stopping import memorisation_check
from _cases import (CASES, NOISE_RATE_CASES, WORK, cached_arrays, case_label, chosen_cases, load_case, run_and_save,
                    timed)

ALL = {**NOISE_RATE_CASES, **{n: c for n, c in CASES.items() if n not in NOISE_RATE_CASES}}
LOW, HIGH = AUTO_EPOCHS
SHOWN_EPOCHS = (3, 6, 9, 12, 15, 18, 21, 24, 27, 30)  # the by-epoch table's columns (the JSON has every epoch)


def auto_stop(checks: dict[int, dict]) -> int:
    """The number of epochs ``--epochs auto`` trains, replayed from ``memorisation_check`` on the first
    e epochs of a fixed run (``checks[e]``)."""
    return next((e for e in range(LOW, HIGH) if checks[e]["memorising"]), HIGH)


def at(margin: np.ndarray, is_noisy: np.ndarray, epochs: int, given: np.ndarray | None = None) -> dict:
    """AUROC and the margin mixture's rate on the AUM of the first ``epochs`` epochs, and where its error
    comes from: error = ``false_mass`` − ``missed``, the posterior mass the mixture puts on clean
    samples (Σ_clean p / N) less the share of mislabeled samples it leaves out (Σ_noisy (1 − p) / N);
    with the shares of clean samples below zero AUM and of mislabeled ones above it."""
    aum = margin[:epochs].mean(axis=0)
    fit = fit_margin_mixture(aum, given=given, early=early_agreement(margin[:epochs]), interval=False)
    noisy = np.asarray(is_noisy).astype(bool)
    p, n = fit.p_mislabeled, len(aum)
    auroc = float(roc_auc_score(noisy, -aum)) if 0 < noisy.sum() < n else None
    return {"epochs": epochs, "auroc": auroc, "rate": fit.noise_rate, "error": fit.noise_rate - float(noisy.mean()),
            "false_mass": float(p[~noisy].sum() / n), "missed": float((1.0 - p[noisy]).sum() / n),
            "clean_below_zero": float((aum[~noisy] < 0).mean()) if (~noisy).any() else None,
            "noisy_above_zero": float((aum[noisy] > 0).mean()) if noisy.any() else None}


def fixed_run(name: str) -> tuple[dict, np.ndarray, float]:
    """The case's 30-epoch run: its margins and losses (E, N) and the class it predicted after each
    epoch, the argmax of its summed probabilities (E, N; row e − 1 after e epochs, row 0 unused),
    which ``memorisation_check`` reads; its is_noisy (N,) and the training seconds. Kept in
    benchmarks/work/<case>.run30.npz, so a stopping rule can be replayed without training again
    (delete the file to retrain). The run asks a rule that never stops, to read what the check sees."""
    def train() -> dict:
        loaded = load_case(ALL[name])
        predicted = {}

        def keep(margin, given, loss, so_far):  # noqa: ARG001 - the check's inputs, recorded, never stopping
            predicted[margin.shape[0]] = so_far
            return {"memorising": False}

        dyn, train_s = timed(loaded.train, ProxySettings(epochs=HIGH, stop_from=2), stop_rule=keep)
        predicted[HIGH] = dyn.mean_probs.argmax(axis=1)
        rows = np.full(dyn.margin.shape, -1, dtype=np.int16)
        for e, p in predicted.items():
            rows[e - 1] = p
        return {"margin": dyn.margin, "loss": dyn.loss, "predicted": rows, "is_noisy": loaded.is_noisy,
                "train_s": train_s}

    saved = cached_arrays(WORK / f"{name}.run30.npz", train)
    return saved, saved["is_noisy"], float(saved["train_s"])


def run_case(name: str) -> dict:
    run, y, train_s = fixed_run(name)
    margin = run["margin"]
    given = np.asarray(load_case(ALL[name]).ds.labels)  # decoded from the cache: the noise model reads them
    checks = {e: memorisation_check(margin[:e], given, run["loss"][:e], run["predicted"][e - 1].astype(np.int64))
              for e in range(2, HIGH + 1)}
    return {"case": name, "held_out": ALL[name].held_out, "true_rate": float(y.mean()), "train_s_30": train_s,
            "fixed_15": at(margin, y, LOW, given), "auto": at(margin, y, auto_stop(checks), given),
            "fixed_30": at(margin, y, HIGH, given),
            "by_epoch": list(checks.values())}


def _share(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _by_epoch_cell(check: dict) -> str:
    mixture = check.get("mixture_rate", check["noise_rate"])  # rows run before the reading existed lack it
    return (f"{mixture:.3f}{'*' if check['undecided'] else ''}"
            f"{'†' if check['noise_rate'] != mixture else ''}")


def markdown(rows: list[dict]) -> str:
    def cell(r: dict) -> str:
        au = "–" if r["auroc"] is None else f"{r['auroc']:.4f}"
        return f"{au} | {r['rate']:.3f} ({r['error']:+.3f})"

    lines = ["| case | true rate | 15: AUROC | 15: rate (error) | auto: epochs | auto: AUROC | auto: rate (error) "
             "| 30: AUROC | 30: rate (error) |", "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {case_label(r)} | {r['true_rate']:.3f} | {cell(r['fixed_15'])} | {r['auto']['epochs']} | "
                     f"{cell(r['auto'])} | {cell(r['fixed_30'])} |")
    shown = [e for e in SHOWN_EPOCHS if e <= HIGH]
    lines += ["", "The margin mixture's rate on the AUM of the first e epochs (* = a component is undecided; † = the "
              "check compared the last epochs' steady confident-joint reading instead):", "",
              "| case | true rate | " + " | ".join(f"e={e}" for e in shown) + " |", "|" + "---|" * (2 + len(shown))]
    for r in rows:
        if "by_epoch" not in r:  # rows run before the column existed
            continue
        at_e = {c["epoch"]: c for c in r["by_epoch"]}
        lines.append(f"| {case_label(r)} | {r['true_rate']:.3f} | " + " | ".join(
            _by_epoch_cell(at_e[e]) for e in shown) + " |")
    decomposed = [r for r in rows if "false_mass" in r["auto"]]  # rows run before the columns existed lack them
    if decomposed:
        lines += ["", "Where the estimate's error comes from, at the epoch `--epochs auto` stops: error = posterior mass "
                  "on clean samples − share of all samples that are mislabeled and left out (both over N):", "",
                  "| case | true rate | rate | error | mass on clean | mislabeled left out | clean with AUM < 0 "
                  "| mislabeled with AUM > 0 |", "|" + "---|" * 8]
        for r in decomposed:
            a = r["auto"]
            lines.append(f"| {case_label(r)} | {r['true_rate']:.3f} | {a['rate']:.3f} | {a['error']:+.3f} | "
                         f"{a['false_mass']:.3f} | {a['missed']:.3f} | {_share(a['clean_below_zero'])} | "
                         f"{_share(a['noisy_above_zero'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    run_and_save(chosen_cases(__doc__, ALL, "epochs"), run_case, markdown)


if __name__ == "__main__":
    main()
