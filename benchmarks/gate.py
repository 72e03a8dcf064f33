#!/usr/bin/env python3
"""Does `labelaudit check --baseline OLD --max-rise R` tell a real rise in the noise from noise in the
estimate?

    python benchmarks/gate.py                                   # digits uniform 0.05 (~12 min on 2 cores)
    python benchmarks/gate.py --base cifar10n_random1_10k --variants 4 --tag gate_cifar   # ~80 min
    python benchmarks/gate.py --base cifar10n_random1_10k --variants 6 --keep --tag gate_cifar  # 2 more of each, the rest reused
    python benchmarks/gate.py --replay --rises 0 0.005 0.01     # judge the saved audits again, no scans

The CI story: a team keeps the audit of its last release and checks every new release against it,
scanned with the same ``--seed``: ``labelaudit check NEW --baseline OLD --max-rise R [--rate-bound
B]``. Two kinds of new release are made from the base case (``benchmarks/_cases.py``) as manifests
over its images:

- *neutral*: a random 2% of the images left out (``--drop``), every label as before, so the true
  rate moves by sampling only (its value is in the table); the proxy's path is drawn anew, as it is
  by any change to the data;
- *worse*: a further ``--rise`` (default 0.03) of all samples, drawn from the correctly labelled
  ones, given a uniformly drawn other class.

Every release, release 0 included, is scanned once with ``proxy_runs=K`` (default 3). Its one-run
verdicts use the first run (the outputs of a ``--proxy-runs K`` scan are the first run's, bit for
bit) with the interval a one-run scan reports, refitted from its scores exactly as scan fits it (on
release 0 the refit is compared with a real one-run scan, and the benchmark stops if they differ);
its pooled verdicts use the scan's own ``--proxy-runs K`` interval. Each verdict is ``check_audit``
on the two audit folders with ``Thresholds(max_rise=R, rate_bound=B)``, as the command gives it, for
R in ``--rises`` and B in estimate (new estimate − old estimate), lower (new lower end − old upper
end: the intervals apart) and upper (new upper end − old lower end). Rows: false alarms (neutral
releases failed) and detections (worse releases failed) per interval, bound and R. Writes
benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil

import numpy as np
import pandas as pd

from labelaudit import scan
from labelaudit.audit.read import load_audit
from labelaudit.gate import RATE_BOUNDS, Thresholds, check_audit
from labelaudit.noise.mixture import fit_noise
from _cases import NOISE_RATE_CASES, RESULTS, WORK, build, machine_meta, read_truth, save_results, timed


def releases(truth: pd.DataFrame, n: int, drop: float, rise: float, classes: list[str]) -> dict[str, pd.DataFrame]:
    """Release 0 (``base``: every sample, its given label) and ``n`` neutral and ``n`` worse releases,
    each a ``path,label`` table over the base's images (paths relative to its images folder)."""
    base = pd.DataFrame({"path": truth.index, "label": truth["noisy_label"].to_numpy()})
    out = {"base": base}
    for k in range(1, n + 1):
        rng = np.random.default_rng(k)
        keep = np.sort(rng.choice(len(base), size=len(base) - int(round(drop * len(base))), replace=False))
        out[f"neutral_{k}"] = base.iloc[keep].reset_index(drop=True)
    clean = np.flatnonzero(~truth["is_noisy"].to_numpy())
    for k in range(1, n + 1):
        rng = np.random.default_rng(1000 + k)
        flip = rng.choice(clean, size=int(round(rise * len(base))), replace=False)
        labels = base["label"].to_numpy().copy()
        for i in flip:
            labels[i] = rng.choice([c for c in classes if c != labels[i]])
        out[f"worse_{k}"] = base.assign(label=labels)
    return out


def one_run_interval(audit) -> list[float]:
    """The interval a one-run scan reports, refitted from this audit's (first-run) scores."""
    samples, run = audit.samples, audit.run
    index = {c: i for i, c in enumerate(run["data"]["classes"])}
    return list(fit_noise(run["config"]["noise_model"], aul_scores=samples["aul"].to_numpy(),
                          aum_scores=samples["aum"].to_numpy(), random_state=run["seed"],
                          given=samples["given_label"].map(index).to_numpy(), early=audit.early_agreement()).interval)


def with_interval(audit, interval):
    """``audit`` with its summary's noise_rate_interval set to ``interval`` (in memory)."""
    return dataclasses.replace(audit, run={**audit.run, "summary": {**audit.summary, "noise_rate_interval": interval}})


def judge(row: dict, audit, base: dict, base_audit, rises: list[float], runs: int) -> dict:
    """{interval: {bound: {R: passed}}}: check_audit(--baseline release 0, --max-rise R, --rate-bound
    bound), both audits with their one-run or their pooled interval."""
    out = {}
    for interval, key in (("one run", "one_run_interval"), (f"{runs} runs", "pooled_interval")):
        new, old = with_interval(audit, row[key]), with_interval(base_audit, base[key])
        out[interval] = {bound: {f"{r:g}": check_audit(new, Thresholds(max_rise=r, rate_bound=bound), old).passed
                                 for r in rises} for bound in RATE_BOUNDS}
    return out


def judge_rows(rows: list[dict], work, rises: list[float], shares: list[float], runs: int) -> None:
    """Every row's verdicts (judge, judge_issues) and model range, from the audit folders under ``work``
    (release 0 first)."""
    base_audit = load_audit(work / rows[0]["release"])
    for row in rows:
        audit = load_audit(work / row["release"])
        row["model_range"] = audit.summary.get("noise_rate_model_range")
        row["passed"] = judge(row, audit, rows[0], base_audit, rises, runs)
        judge_issues(row, audit, base_audit, shares)


def judge_issues(row: dict, audit, base_audit, shares: list[float]) -> None:
    """row["new_suspects"] (suspects that were not suspects in release 0) and row["issues_passed"]:
    {q: passed} of check_audit(--baseline release 0, --max-issues round(q · release 0's samples))."""
    n = len(base_audit.samples)
    row["new_suspects"] = len(check_audit(audit, Thresholds(max_issues=n), base_audit).new_suspects)
    row["issues_passed"] = {f"{q:g}": check_audit(audit, Thresholds(max_issues=int(round(q * n))), base_audit).passed
                            for q in shares}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="digits_uniform_0.05", choices=list(NOISE_RATE_CASES))
    ap.add_argument("--variants", type=int, default=5, help="neutral and worse releases of each kind")
    ap.add_argument("--drop", type=float, default=0.02)
    ap.add_argument("--rise", type=float, default=0.03)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rises", type=float, nargs="+", default=[0.0, 0.005, 0.01, 0.02], help="--max-rise values")
    ap.add_argument("--shares", type=float, nargs="+", default=[0.01, 0.02, 0.03],
                    help="--max-issues values as shares of release 0's samples")
    ap.add_argument("--tag", default="gate")
    ap.add_argument("--keep", action="store_true",
                    help="reuse the audit of every release whose manifest is unchanged since the last run (more "
                         "--variants without scanning the first ones again)")
    ap.add_argument("--replay", action="store_true",
                    help="no scans: judge the audit folders of the last run of this --tag again (e.g. other --rises)")
    args = ap.parse_args()

    if args.replay:
        payload = json.loads((RESULTS / f"{args.tag}.json").read_text())
        work = WORK / "gate" / payload["base"]
        rows = payload["rows"]
        judge_rows(rows, work, args.rises, args.shares, payload["runs"])
        payload.update(rises=args.rises, shares=args.shares, summary=tally(rows, args.rises),
                       issues_summary=tally_issues(rows, args.shares), replayed=machine_meta()["date"])
        save_results(args.tag, payload, markdown(payload))
        return
    case = NOISE_RATE_CASES[args.base]
    folder = build(case)
    truth = read_truth(folder)
    classes = sorted(set(truth["clean_label"]) - {""})
    work = WORK / "gate" / args.base
    saved = {}
    if args.keep and (RESULTS / f"{args.tag}.json").exists():
        saved = {r["release"]: r for r in json.loads((RESULTS / f"{args.tag}.json").read_text())["rows"]}
    else:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    options = dict(case.scan_options, cache_dir=str(WORK / "cache"), seed=0)

    rows = []
    for name, table in releases(truth, args.variants, args.drop, args.rise, classes).items():
        manifest = work / f"{name}.csv"
        text = table.to_csv(index=False)
        kept = (name in saved and (work / name / "run.json").exists() and manifest.exists()
                and manifest.read_text() == text)
        if kept:
            wall = saved[name]["scan_s"]
        else:
            manifest.write_text(text)
            _, wall = timed(scan, manifest=manifest, root=folder / "images", out=work / name,
                            proxy_runs=args.runs, report=False, **options)
        audit = load_audit(work / name)
        one = one_run_interval(audit)
        given = table.set_index("path")["label"]
        true = float((given != truth.loc[given.index, "clean_label"]).mean())
        pooled = list(audit.summary["noise_rate_interval"])
        row = {"release": name, "kind": name.split("_")[0], "n": len(table), "true_rate": true,
               "est_rate": audit.summary["noise_rate"], "runs": audit.summary["noise_rate_runs"],
               "one_run_interval": one, "pooled_interval": pooled, "scan_s": wall}
        if name == "base" and not kept:
            alone = scan(manifest=manifest, root=folder / "images", out=None, proxy_runs=1, **options)
            if alone.summary["noise_rate"] != audit.summary["noise_rate"] or \
                    list(alone.summary["noise_rate_interval"]) != one:
                raise SystemExit(f"the refitted one-run interval {one} is not a one-run scan's "
                                 f"{alone.summary['noise_rate_interval']}; fix one_run_interval")
        rows.append(row)
        print(f"{name}: true {true:.4f} est {row['est_rate']:.4f} runs {', '.join(f'{x:.4f}' for x in row['runs'])} "
              f"one [{one[0]:.4f}, {one[1]:.4f}] pooled [{pooled[0]:.4f}, {pooled[1]:.4f}] {wall:.0f} s", flush=True)

    judge_rows(rows, work, args.rises, args.shares, args.runs)
    payload = {"meta": machine_meta(), "base": args.base, "options": case.scan_options, "drop": args.drop,
               "rise": args.rise, "runs": args.runs, "rises": args.rises, "shares": args.shares,
               "summary": tally(rows, args.rises), "issues_summary": tally_issues(rows, args.shares), "rows": rows}
    save_results(args.tag, payload, markdown(payload))


def tally(rows: list[dict], rises: list[float]) -> list[dict]:
    """Per interval, bound and R: how many neutral releases failed and how many worse ones did."""
    out = []
    for interval in rows[0]["passed"]:
        for bound in RATE_BOUNDS:
            for r in rises:
                (fa, nn), (det, nw) = (_failed(rows, kind, lambda row: row["passed"][interval][bound][f"{r:g}"])
                                       for kind in ("neutral", "worse"))
                out.append({"interval": interval, "bound": bound, "max_rise": r, "false_alarms": fa, "n_neutral": nn,
                            "detections": det, "n_worse": nw})
    return out


def _failed(rows: list[dict], kind: str, verdict) -> tuple[int, int]:
    """(releases of ``kind`` whose ``verdict(row)`` failed, releases of ``kind``)."""
    mine = [row for row in rows if row["kind"] == kind]
    return sum(not verdict(row) for row in mine), len(mine)


def tally_issues(rows: list[dict], shares: list[float]) -> list[dict]:
    """Per share q: neutral and worse releases failed by --baseline --max-issues round(q · n)."""
    out = []
    for q in shares:
        (fa, nn), (det, nw) = (_failed(rows, kind, lambda row: row["issues_passed"][f"{q:g}"])
                               for kind in ("neutral", "worse"))
        out.append({"share": q, "max_issues": int(round(q * rows[0]["n"])), "false_alarms": fa, "n_neutral": nn,
                    "detections": det, "n_worse": nw})
    return out


def _range(rng) -> str:
    return f"{rng[0]:.3f}–{rng[1]:.3f}" if rng else "none"


def markdown(payload: dict) -> str:
    rows = payload["rows"]
    lines = [f"**{payload['base']}**: neutral = {payload['drop']:.0%} of the images left out; worse = "
             f"{payload['rise']:.0%} more of the samples mislabeled; scanned with seed 0, "
             f"--proxy-runs {payload['runs']}.", "",
             "| release | samples | true rate | estimate | each run | one-run interval | pooled interval | model range "
             "| new suspects | scan s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        one, pooled = r["one_run_interval"], r["pooled_interval"]
        lines.append(f"| {r['release']} | {r['n']:,} | {r['true_rate']:.4f} | {r['est_rate']:.4f} | "
                     f"{', '.join(f'{x:.4f}' for x in r['runs'])} | [{one[0]:.4f}, {one[1]:.4f}] | "
                     f"[{pooled[0]:.4f}, {pooled[1]:.4f}] | {_range(r.get('model_range'))} | "
                     f"{r['new_suspects']:,} | {r['scan_s']:.0f} |")
    rises = payload["rises"]
    lines += ["", "`check RELEASE --baseline base --max-rise R --rate-bound B`: neutral releases failed (false alarms) "
              "· worse releases failed (detections).", "",
              "| interval | --rate-bound | " + " | ".join(f"R = {r:g}" for r in rises) + " |",
              "|---|---|" + "---|" * len(rises)]
    cells = {(s["interval"], s["bound"], s["max_rise"]): f"{s['false_alarms']}/{s['n_neutral']} · "
             f"{s['detections']}/{s['n_worse']}" for s in payload["summary"]}
    for interval, bound in dict.fromkeys((s["interval"], s["bound"]) for s in payload["summary"]):
        lines.append(f"| {interval} | {bound} | " + " | ".join(cells[interval, bound, r] for r in rises) + " |")
    lines += ["", "`check RELEASE --baseline base --max-issues N` (new suspects: flagged now, not flagged in release 0), "
              "N a share of release 0's samples: false alarms · detections.", "",
              "| share | --max-issues | false alarms | detections |", "|---|---|---|---|"]
    for s in payload["issues_summary"]:
        lines.append(f"| {s['share']:g} | {s['max_issues']:,} | {s['false_alarms']}/{s['n_neutral']} | "
                     f"{s['detections']}/{s['n_worse']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
