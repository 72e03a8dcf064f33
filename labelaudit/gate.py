"""``labelaudit check``: gate a CI job on an audit's noise estimates.

Five thresholds, each optional: the dataset noise rate, the worst per-class noise rate (given-label
view, noise.parquet), the number of label issues, the width of the noise model's range for the
dataset rate (``summary.noise_rate_model_range``: 0 when every mixture component is decided, see
mixture.fit_margin_mixture), so a gate can refuse an estimate the noise model could not pin down, and
the rise of the dataset rate since a baseline audit. A check passes when every threshold that is set
holds (value ≤ limit). The dataset rate compared is the estimate, or with ``rate_bound`` an end of
its 95% interval (RATE_BOUNDS).

With a baseline (an earlier audit of the same dataset, e.g. the last release), only what is new
counts, so a growing dataset is not failed for the issues it already had: the noise rates are taken
over the samples whose path is not in the baseline, and the issue count is the number of suspects
whose path was not a suspect in the baseline. ``max_rise`` compares the whole dataset's rate with the
baseline's: the estimates' difference, or with ``rate_bound`` "lower" the gap between the new
interval's lower end and the baseline's upper end (positive only when the two intervals are apart:
a rise the estimates' noise does not explain), with "upper" the new upper end less the old lower end
(benchmarks/gate.py measures which rule tells a real rise from a re-scan's noise).

Thresholds come from the command line, else from ``[tool.labelaudit.check]`` in the nearest
pyproject.toml, or ``[check]`` (or ``[tool.labelaudit.check]``) in the nearest labelaudit.toml, looked
for from the working folder upwards, or from the file ``--config`` names. Command-line values win.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path


from .audit.read import Audit
from .config import find_config as find_settings_file, read_toml, section_of
from .errors import UsageError
from .noise.mixture import NO_CLASS_KINDS, no_class_count
from .scores import unlearned_note

# What --max-noise-rate compares with its limit: the estimate, or an end of its 95% interval
# (summary.noise_rate_interval: the bootstrap's, pooled over the runs of scan --proxy-runs, or the
# trusted calibration's). "lower" fails only when the audit is confident the rate is above the limit
# (a gate that must not fail on noise in the estimate); "upper" passes only when it is confident the
# rate is below it.
RATE_BOUNDS = ("estimate", "lower", "upper")
_END = {"lower": 0, "upper": 1}  # a bound's index in noise_rate_interval


@dataclass(frozen=True)
class Thresholds:
    max_noise_rate: float | None = None  # dataset noise rate, 0..1
    max_class_noise_rate: float | None = None  # worst class's rate (given-label view), 0..1
    max_issues: int | None = None  # number of samples flagged is_label_issue
    max_model_range: float | None = None  # width of the audit's model range for the dataset rate, 0..1
    rate_bound: str | None = None  # which of the dataset rate's numbers max-noise-rate reads (RATE_BOUNDS)
    max_rise: float | None = None  # rise of the dataset rate since the baseline audit, 0..1 (0.02 = 2 points)

    def any(self) -> bool:
        return any(v is not None for k, v in asdict(self).items() if k != "rate_bound")

    def require(self, with_baseline: bool = False) -> "Thresholds":
        """Valid, with at least one threshold set and what each needs; else a UsageError saying how to
        set it. ``with_baseline``: a baseline audit is given (--max-rise needs one)."""
        self.validate()
        if self.rate_bound is not None and self.max_noise_rate is None and self.max_rise is None:
            raise UsageError(f"--rate-bound {self.rate_bound}: it says what --max-noise-rate or --max-rise "
                             f"compares, and neither is set; add one (e.g. --max-noise-rate 0.05)")
        if self.max_rise is not None and not with_baseline:
            raise UsageError(f"--max-rise {self.max_rise}: it compares the dataset noise rate with an earlier "
                             f"audit's, and there is none; pass --baseline OLD_AUDIT (e.g. the last release's)")
        if with_baseline and self.rate_bound not in (None, "estimate") and self.max_noise_rate is not None:
            raise UsageError(f"--rate-bound {self.rate_bound} with --baseline and --max-noise-rate: the rate of the "
                             f"new samples has no interval (the audit's is of the whole dataset), so with "
                             f"--baseline --rate-bound reads only --max-rise; leave out one of them")
        if not self.any():
            raise UsageError("no thresholds to check: pass --max-noise-rate, --max-class-noise-rate, "
                             "--max-issues, --max-model-range or --max-rise, or set them in "
                             "[tool.labelaudit.check] of pyproject.toml")
        return self

    def merged(self, override: "Thresholds") -> "Thresholds":
        """These thresholds with every value ``override`` sets replacing ours."""
        return replace(self, **{k: v for k, v in asdict(override).items() if v is not None})

    def validate(self, where: str = "") -> "Thresholds":
        for name in ("max_noise_rate", "max_class_noise_rate", "max_model_range", "max_rise"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise UsageError(f"{where}--{name.replace('_', '-')} {value!r}: expected a rate from 0 to 1 "
                                 f"(0.05 = 5%)")
        if self.max_issues is not None and not (isinstance(self.max_issues, int) and self.max_issues >= 0):
            raise UsageError(f"{where}--max-issues {self.max_issues!r}: expected a whole number, 0 or more")
        if self.rate_bound is not None and self.rate_bound not in RATE_BOUNDS:
            raise UsageError(f"{where}--rate-bound {self.rate_bound!r}: choose one of {', '.join(RATE_BOUNDS)} "
                             f"(what --max-noise-rate compares: the estimate, or the lower or upper end of its "
                             f"95% interval)")
        return self


def find_config(start: str | Path = ".") -> Path | None:
    """The nearest labelaudit.toml, or pyproject.toml with ``[tool.labelaudit.check]``, from ``start`` up."""
    return find_settings_file("check", start)


def load_thresholds(path: str | Path) -> Thresholds:
    """Thresholds from a TOML file's check table (see the module docstring)."""
    path = Path(path)
    table = section_of(read_toml(path), path, "check")
    if table is None:
        where = "[tool.labelaudit.check]" if path.name == "pyproject.toml" else "[check] or [tool.labelaudit.check]"
        raise UsageError(f"{path}: no {where} table; add one with e.g. max-noise-rate = 0.05")
    known = {f.name for f in fields(Thresholds)}
    values = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise UsageError(f"{path}: unknown check setting {key!r}; "
                             f"use {', '.join(k.replace('_', '-') for k in sorted(known))}")
        values[name] = value
    return Thresholds(**values).validate(where=f"{path}: ")


@dataclass(frozen=True)
class Verdict:
    name: str  # the threshold's option name, e.g. "max-noise-rate"
    what: str  # in words, e.g. "dataset noise rate" or "noise rate of class 'cat'"
    value: float
    limit: float
    passed: bool


@dataclass
class CheckResult:
    verdicts: list[Verdict]
    scope: str  # "all samples", "new since the baseline", or "all samples, against the baseline" (only --max-rise)
    n_samples: int  # samples in scope
    new_suspects: list[str] = field(default_factory=list)  # with a baseline: the new suspects' paths
    config: str | None = None  # the file thresholds came from
    with_baseline: bool = False
    caveats: list[str] = field(default_factory=list)  # what the verdict cannot see, e.g. an uncertain estimate

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "scope": self.scope, "n_samples": self.n_samples,
                "verdicts": [asdict(v) for v in self.verdicts], "new_suspects": self.new_suspects,
                "config": self.config, "caveats": self.caveats}


def check_audit(audit: Audit, thresholds: Thresholds, baseline: Audit | None = None) -> CheckResult:
    """Compare an audit with thresholds (and, optionally, with a baseline audit)."""
    thresholds.require(with_baseline=baseline is not None)
    samples = audit.samples
    verified = audit.summary.extra.get("verified")
    if baseline is None:
        scope, n = "all samples", len(samples)
        noise_rate = float(audit.summary.noise_rate)  # after labelaudit review: the verified rate and interval
        interval = audit.summary.noise_rate_interval
        classes = audit.class_rates.set_index("label")["noise_rate"]
        if verified:  # the classes' stratified estimates, not the recalibrated p's means
            classes = audit.class_rates.set_index("label")["verified_rate"].dropna()
            scope = f"all samples, verified by {verified['answers']:,} answers"
        issues = int(samples["is_label_issue"].sum())
        new_suspects: list[str] = []
    else:
        known = set(baseline.samples["path"])
        was_suspect = set(baseline.samples.loc[baseline.samples["is_label_issue"], "path"])
        new = samples[~samples["path"].isin(known)]
        counted = (thresholds.max_noise_rate, thresholds.max_class_noise_rate, thresholds.max_issues)
        # only --max-rise (and --max-model-range) set: every verdict is of the whole audit
        scope, n = ("new since the baseline", len(new)) if any(x is not None for x in counted) \
            else ("all samples, against the baseline", len(samples))
        noise_rate = float(new["p_mislabeled"].mean()) if n else 0.0
        interval = audit.summary.noise_rate_interval
        classes = new.groupby("given_label")["p_mislabeled"].mean()
        flagged = samples[samples["is_label_issue"] & ~samples["path"].isin(was_suspect)]
        new_suspects = flagged.sort_values("rank")["path"].tolist()
        issues = len(new_suspects)
    verdicts, notes = [], []
    if thresholds.max_noise_rate is not None:
        what = "verified dataset noise rate" if verified and baseline is None else "dataset noise rate"
        value = noise_rate
        bound = thresholds.rate_bound or "estimate"
        if bound != "estimate":
            if interval:
                lo, hi = interval
                what = (f"{what}, {bound} end of its 95% interval ({lo:.1%}–{hi:.1%}, estimate "
                        f"{noise_rate:.1%})")
                value = float(interval[_END[bound]])
            else:
                notes.append(f"the audit has no interval for its noise rate, so --rate-bound {bound} compared the "
                             f"estimate itself")
        verdicts.append(Verdict("max-noise-rate", what, value, thresholds.max_noise_rate,
                                value <= thresholds.max_noise_rate))
    if thresholds.max_class_noise_rate is not None:
        worst_label = str(classes.idxmax()) if len(classes) else None
        worst = float(classes.max()) if len(classes) else 0.0
        verdicts.append(Verdict("max-class-noise-rate",
                                f"noise rate of class {worst_label!r} (the worst)" if worst_label else "class noise rate",
                                worst, thresholds.max_class_noise_rate, worst <= thresholds.max_class_noise_rate))
    if thresholds.max_issues is not None:
        verdicts.append(Verdict("max-issues", "new label issues" if baseline is not None else "label issues",
                                issues, thresholds.max_issues, issues <= thresholds.max_issues))
    if thresholds.max_rise is not None:
        verdicts.append(_rise(audit, baseline, thresholds.rate_bound or "estimate", thresholds.max_rise, notes))
    if thresholds.max_model_range is not None:
        rng = audit.summary.noise_rate_model_range  # None: every component decided, or recalibrated
        width = round(rng[1] - rng[0], 12) if rng else 0.0  # 0.1 − 0.02 = 0.08000000000000002: 0.08 must hold
        span = f"{rng[0]:.1%}–{rng[1]:.1%}" if rng else "none"
        verdicts.append(Verdict("max-model-range", f"width of the audit's model range for the dataset noise rate "
                                f"({span})", width, thresholds.max_model_range, width <= thresholds.max_model_range))
    return CheckResult(verdicts, scope, n, new_suspects, with_baseline=baseline is not None,
                       caveats=notes + _caveats(audit, baseline))


def _rise(audit: Audit, baseline: Audit, bound: str, limit: float, notes: list[str]) -> Verdict:
    """max-rise: the dataset rate now less the baseline's; with ``bound`` lower, the new interval's lower
    end less the baseline's upper end (a confident rise), with upper, the new upper end less the old
    lower end. Without both intervals the estimates are compared, and ``notes`` says so."""
    new, old = float(audit.summary.noise_rate), float(baseline.summary.noise_rate)
    what, value = f"rise of the dataset noise rate since the baseline ({old:.1%} → {new:.1%})", new - old
    if bound != "estimate":
        now, then = audit.summary.noise_rate_interval, baseline.summary.noise_rate_interval
        if now and then:
            mine = _END[bound]
            theirs = 1 - mine  # the baseline's other end: lower reads new low − old high
            value = float(now[mine]) - float(then[theirs])
            what = (f"rise of the dataset noise rate since the baseline, the {bound} end of its 95% interval "
                    f"({now[0]:.1%}–{now[1]:.1%}) less the {('lower', 'upper')[theirs]} end of the baseline's "
                    f"({then[0]:.1%}–{then[1]:.1%})")
        else:
            which = " and ".join(w for w, iv in (("the audit", now), ("the baseline", then)) if not iv)
            notes.append(f"{which} has no interval for its noise rate, so --rate-bound {bound} --max-rise compared "
                         f"the estimates")
    value = round(value, 12)  # 0.07 − 0.05 = 0.020000000000000004: a rise of exactly the limit must hold
    return Verdict("max-rise", what, value, limit, value <= limit)


def _caveats(audit: Audit, baseline: Audit | None) -> list[str]:
    """The audits' model ranges (mixture.fit_margin_mixture): the verdict compares the estimate, which
    could be anywhere in the range; and the share of the rate that rests on the no-class rule
    (mixture.no_class_components), which counts unreadable but rightly labelled images as well."""
    notes = []
    for which, a in (("the audit", audit), ("the baseline", baseline)):
        if a is None:
            continue
        rng = a.summary.noise_rate_model_range
        if rng:
            notes.append(f"{which}'s noise model could not call part of the data (a mixture component straddles "
                         f"a margin of 0): its dataset noise rate {a.summary.noise_rate:.1%} could be anywhere "
                         f"from {rng[0]:.1%} to {rng[1]:.1%}, and the class rates move with it")
        unlearned = unlearned_note(a.summary.proxy_agreement, a.summary.proxy_kappa)
        if unlearned:
            notes.append(f"in {which}, {unlearned}")
        n_no_class = no_class_count(a.run.noise_model.extra, a.summary.n_samples)
        if n_no_class:
            notes.append(f"{which}'s dataset noise rate counts about {n_no_class:,} samples as images of no class "
                         f"({NO_CLASS_KINDS}), not as wrong labels of real classes")
    return notes


def _fmt(name: str, x: float) -> str:
    if name == "max-rise":
        return f"{x * 100:+.1f} points"
    return f"{x:,.0f}" if name == "max-issues" else f"{x:.1%}"


def verdict_lines(result: CheckResult) -> list[str]:
    """One line per threshold: 'PASS  dataset noise rate 3.2% ≤ 5.0% (max-noise-rate)'."""
    return [f"{'PASS' if v.passed else 'FAIL'}  {v.what} {_fmt(v.name, v.value)} "
            f"{'≤' if v.passed else '>'} {_fmt(v.name, v.limit)} ({v.name})" for v in result.verdicts]


def to_markdown(result: CheckResult, audit: Audit, *, top: int = 20) -> str:
    """A CI job summary: the verdict, a table of thresholds, and the suspects that made it fail."""
    head = "✅ labelaudit check passed" if result.passed else "❌ labelaudit check failed"
    lines = [f"## {head}", "", f"Scope: {result.scope} ({result.n_samples:,} samples) · audit `{audit.path}`", "",
             "| threshold | value | limit | result |", "|---|---|---|---|"]
    for v in result.verdicts:
        lines.append(f"| {v.what} (`--{v.name}`) | {_fmt(v.name, v.value)} | {_fmt(v.name, v.limit)} | "
                     f"{'pass' if v.passed else '**fail**'} |")
    lines += [f"\n> ⚠️ Uncertain: {note}." for note in result.caveats]
    suspects = audit.suspects
    if result.with_baseline:
        suspects = suspects[suspects["path"].isin(result.new_suspects)]
    if len(suspects):
        lines += ["", f"Top {min(top, len(suspects))} of {len(suspects):,} suspects:", "",
                  "| rank | path | given | predicted | p(mislabeled) |", "|---|---|---|---|---|"]
        for row in suspects.head(top).itertuples(index=False):
            path = str(row.path).replace("|", "\\|")
            lines.append(f"| {row.rank} | `{path}` | {row.given_label} | {row.predicted_label} | "
                         f"{row.p_mislabeled:.2f} |")
    return "\n".join(lines) + "\n"
