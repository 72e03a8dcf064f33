"""check, export, show and report: commands that read an audit folder and never retrain.

Most tests use audits written directly from hand-made tables (known rates, known suspects); the
export round trip and the report use a real scan of the colour folder.
"""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from labelaudit import scan
from labelaudit.audit.read import load_audit
from labelaudit.gate import Thresholds, check_audit, load_thresholds
from labelaudit.cli import app
from labelaudit.errors import UsageError
from labelaudit.noise.mixture import noise_table
from labelaudit.audit.write import SAMPLE_COLUMNS, write_audit

from .conftest import FAST

runner = CliRunner()


def write_fake_audit(out, paths, labels, p, *, root="/data"):
    """An audit folder whose p_mislabeled is ``p`` (flagged above 0.5), without any training."""
    p = np.asarray(p, dtype=np.float64)
    classes = sorted(set(labels))
    other = {c: classes[(i + 1) % len(classes)] for i, c in enumerate(classes)}
    samples = pd.DataFrame({
        "sample_id": np.arange(len(p), dtype=np.int64), "path": paths, "given_label": labels, "score": p,
        "p_mislabeled": p, "is_label_issue": p > 0.5, "label_score": 1 - p,
        "rank": (pd.Series(-p).rank(method="first").astype("int64")).to_numpy(),
        "predicted_label": [other[c] if q > 0.5 else c for c, q in zip(labels, p)],
        "predicted_confidence": np.full(len(p), 0.8), "weight": 1 - p, "aul": p, "aum": -p,
    })[SAMPLE_COLUMNS]
    given = np.array([classes.index(c) for c in labels])
    noise = noise_table(p, given, classes)
    run = {"summary": {"noise_rate": float(p.mean()), "n_label_issues": int((p > 0.5).sum()),
                       "n_samples": len(p), "n_errors": 0, "n_classes": len(classes)},
           "data": {"root": root, "source": "folder"}, "noise_model": {"method": "hand-made"}, "config": {}}
    errors = pd.DataFrame({"path": pd.Series(dtype=str), "error": pd.Series(dtype=str)})
    write_audit(out, samples=samples, noise=noise, trajectories=samples[["sample_id"]], errors=errors, run=run)
    return out


@pytest.fixture
def audit_10pct(tmp_path):
    """100 samples, 50 'cat' + 50 'dog'; 10 flagged, all given 'dog' → dog's rate 0.2, dataset 0.1."""
    labels = ["cat"] * 50 + ["dog"] * 50
    p = np.zeros(100)
    p[90:] = 1.0
    return write_fake_audit(tmp_path / "a10", [f"{c}/{i}.png" for i, c in enumerate(labels)], labels, p)


# --- check ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, code", [
    (["--max-noise-rate", "0.1"], 0),
    (["--max-noise-rate", "0.09"], 1),
    (["--max-class-noise-rate", "0.2"], 0),
    (["--max-class-noise-rate", "0.19"], 1),
    (["--max-issues", "10"], 0),
    (["--max-issues", "9"], 1),
    (["--max-noise-rate", "0.5", "--max-issues", "3"], 1),
    (["--max-noise-rate", "1.5"], 2),
    ([], 2),
])
def test_check_exit_codes(audit_10pct, tmp_path, monkeypatch, args, code):
    monkeypatch.chdir(tmp_path)  # no pyproject.toml with thresholds above the working folder
    res = runner.invoke(app, ["check", str(audit_10pct), *args])
    assert res.exit_code == code, res.output


def test_check_verdict_names_threshold_value_and_limit(audit_10pct, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    md = tmp_path / "summary.md"
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-class-noise-rate", "0.15", "--max-issues", "20",
                              "--markdown", str(md)])
    assert res.exit_code == 1
    assert "FAIL  noise rate of class 'dog' (the worst) 20.0% > 15.0% (max-class-noise-rate)" in res.output
    assert "PASS  label issues 10 ≤ 20 (max-issues)" in res.output
    text = md.read_text()
    assert "check failed" in text and "| 20.0% | 15.0% | **fail** |" in text
    assert text.count("| `dog/") == 10  # the suspects that made it fail
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-issues", "20", "--json"])
    verdict = json.loads(res.stdout)
    assert res.exit_code == 0 and verdict["passed"] is True
    assert verdict["verdicts"] == [{"name": "max-issues", "what": "label issues", "value": 10, "limit": 20,
                                    "passed": True}]


def test_check_names_an_uncertain_estimate(audit_10pct, tmp_path, monkeypatch):
    """An audit whose noise model left a component undecided: the verdict is the estimate's, with a caveat."""
    monkeypatch.chdir(tmp_path)
    run_json = audit_10pct / "run.json"
    run = json.loads(run_json.read_text())
    run["summary"]["noise_rate_model_range"] = [0.02, 0.1]
    run_json.write_text(json.dumps(run))
    md = tmp_path / "summary.md"
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-noise-rate", "0.1", "--markdown", str(md)])
    assert res.exit_code == 0
    assert "Uncertain: the audit's noise model could not call part of the data" in res.output
    assert "rate 10.0% could be anywhere from 2.0% to 10.0%" in res.output
    assert "⚠️ Uncertain: the audit's noise model" in md.read_text()
    verdict = json.loads(runner.invoke(app, ["check", str(audit_10pct), "--max-noise-rate", "0.1", "--json"]).stdout)
    assert len(verdict["caveats"]) == 1 and "2.0% to 10.0%" in verdict["caveats"][0]
    run["summary"]["noise_rate_model_range"] = None
    run_json.write_text(json.dumps(run))
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-noise-rate", "0.1"])
    assert "Uncertain" not in res.output
    run["noise_model"].update({"weights": [0.08, 0.92], "no_class": [True, False]})
    run_json.write_text(json.dumps(run))
    verdict = json.loads(runner.invoke(app, ["check", str(audit_10pct), "--max-noise-rate", "0.1", "--json"]).stdout)
    assert verdict["caveats"] == ["the audit's dataset noise rate counts about 8 samples as images of no class "
                                  "(junk, blanks, images outside the label set, or images too degraded to read), "
                                  "not as wrong labels of real classes"]


@pytest.mark.parametrize("model_range, limit, code, line", [
    ([0.02, 0.1], "0.05", 1, "FAIL  width of the audit's model range for the dataset noise rate (2.0%–10.0%) "
                             "8.0% > 5.0% (max-model-range)"),
    ([0.02, 0.1], "0.08", 0, "PASS  width of the audit's model range for the dataset noise rate (2.0%–10.0%) "
                             "8.0% ≤ 8.0% (max-model-range)"),
    (None, "0", 0, "PASS  width of the audit's model range for the dataset noise rate (none) "
                   "0.0% ≤ 0.0% (max-model-range)"),
    ([0.1, 0.3], "0", 1, "(10.0%–30.0%) 20.0% > 0.0% (max-model-range)"),
    ([0.1, 0.3], "1.2", 2, "--max-model-range 1.2: expected a rate from 0 to 1"),
])
def test_check_gates_on_the_model_range(audit_10pct, tmp_path, monkeypatch, model_range, limit, code, line):
    """--max-model-range: the width of the noise model's range (0 when every component is decided)."""
    monkeypatch.chdir(tmp_path)
    run_json = audit_10pct / "run.json"
    run = json.loads(run_json.read_text())
    run["summary"]["noise_rate_model_range"] = model_range
    run_json.write_text(json.dumps(run))
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-model-range", limit])
    assert res.exit_code == code, res.output
    assert " ".join(line.split()) in " ".join(res.output.split())
    (tmp_path / "labelaudit.toml").write_text(f"[check]\nmax-model-range = {limit}\n")
    assert runner.invoke(app, ["check", str(audit_10pct)]).exit_code == code


def _with_interval(audit, interval):
    """Write ``interval`` into an audit folder's run.json as its noise-rate interval."""
    run_json = audit / "run.json"
    run = json.loads(run_json.read_text())
    run["summary"]["noise_rate_interval"] = interval
    run_json.write_text(json.dumps(run))
    return audit


@pytest.mark.parametrize("bound, limit, code, line", [
    ("lower", "0.07", 0, "PASS  dataset noise rate, lower end of its 95% interval (6.0%–14.0%, estimate 10.0%) "
                         "6.0% ≤ 7.0% (max-noise-rate)"),
    ("lower", "0.05", 1, "FAIL  dataset noise rate, lower end of its 95% interval (6.0%–14.0%, estimate 10.0%) "
                         "6.0% > 5.0% (max-noise-rate)"),
    ("upper", "0.12", 1, "FAIL  dataset noise rate, upper end of its 95% interval (6.0%–14.0%, estimate 10.0%) "
                         "14.0% > 12.0% (max-noise-rate)"),
    ("upper", "0.14", 0, "14.0% ≤ 14.0% (max-noise-rate)"),
    ("estimate", "0.07", 1, "FAIL  dataset noise rate 10.0% > 7.0% (max-noise-rate)"),
    ("middle", "0.07", 2, "--rate-bound 'middle': choose one of estimate, lower, upper"),
])
def test_check_can_gate_on_an_end_of_the_interval(audit_10pct, tmp_path, monkeypatch, bound, limit, code, line):
    """--rate-bound lower: fail only when the audit is confident the rate is above the limit; upper: pass
    only when it is confident the rate is within it; the estimate 10%, its interval 6–14%."""
    monkeypatch.chdir(tmp_path)
    _with_interval(audit_10pct, [0.06, 0.14])
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-noise-rate", limit, "--rate-bound", bound])
    assert res.exit_code == code, res.output
    assert " ".join(line.split()) in " ".join(res.output.split())
    (tmp_path / "labelaudit.toml").write_text(f'[check]\nmax-noise-rate = {limit}\nrate-bound = "{bound}"\n')
    assert runner.invoke(app, ["check", str(audit_10pct)]).exit_code == code


def test_check_rate_bound_needs_an_interval_a_rate_limit_and_no_baseline(audit_10pct, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-noise-rate", "0.12", "--rate-bound", "upper"])
    assert res.exit_code == 0  # no interval in this audit: the estimate (10%) is compared, and the check says so
    assert "no interval for its noise rate, so --rate-bound upper compared the estimate itself" in res.output
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-issues", "20", "--rate-bound", "lower"])
    assert res.exit_code == 2 and "--max-noise-rate or --max-rise compares, and neither is set" in res.output
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-noise-rate", "0.2", "--rate-bound", "lower",
                              "--baseline", str(audit_10pct)])
    assert res.exit_code == 2 and "--rate-bound lower with --baseline" in res.output


@pytest.mark.parametrize("bound, limit, code, line", [
    (None, "0.04", 1, "FAIL  rise of the dataset noise rate since the baseline (10.0% → 15.0%) +5.0 points > "
                      "+4.0 points (max-rise)"),
    (None, "0.05", 0, "+5.0 points ≤ +5.0 points (max-rise)"),  # 0.15 − 0.10 is 0.04999…: exactly the limit holds
    ("lower", "0", 0, "PASS  rise of the dataset noise rate since the baseline, the lower end of its 95% interval "
                      "(12.0%–18.0%) less the upper end of the baseline's (6.0%–14.0%) -2.0 points ≤ +0.0 points"),
    ("upper", "0.1", 1, "the upper end of its 95% interval (12.0%–18.0%) less the lower end of the baseline's "
                        "(6.0%–14.0%) +12.0 points > +10.0 points (max-rise)"),
])
def test_check_max_rise_compares_the_dataset_rate_with_the_baselines(tmp_path, monkeypatch, bound, limit, code, line):
    """The same 100 paths relabelled: rate 10% (interval 6–14%) → 15% (12–18%). The estimates rose by
    5 points; the intervals overlap (lower end 12% < old upper end 14%), so a --rate-bound lower gate
    at 0 passes; the widest reading, upper − lower, is 12 points."""
    monkeypatch.chdir(tmp_path)
    labels = ["cat"] * 50 + ["dog"] * 50
    paths = [f"{c}/{i}.png" for i, c in enumerate(labels)]
    p = np.zeros(100)
    p[90:] = 1.0
    old = _with_interval(write_fake_audit(tmp_path / "old", paths, labels, p), [0.06, 0.14])
    p[:5] = 1.0
    new = _with_interval(write_fake_audit(tmp_path / "new", paths, labels, p), [0.12, 0.18])
    args = ["check", str(new), "--baseline", str(old), "--max-rise", limit] + (["--rate-bound", bound] if bound else [])
    res = runner.invoke(app, args)
    assert res.exit_code == code, res.output
    assert " ".join(line.split()) in " ".join(res.output.split())
    assert "all samples, against the baseline (100 samples)" in res.output  # no new-sample threshold is set
    toml = f"[check]\nmax-rise = {limit}\n" + (f'rate-bound = "{bound}"\n' if bound else "")
    (tmp_path / "labelaudit.toml").write_text(toml)
    assert runner.invoke(app, ["check", str(new), "--baseline", str(old)]).exit_code == code


def test_check_max_rise_needs_a_baseline_and_says_when_it_compared_estimates(audit_10pct, tmp_path):
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-rise", "0.02"])
    assert res.exit_code == 2
    assert "--max-rise 0.02: it compares the dataset noise rate with an earlier audit's" in res.output
    old = _with_interval(write_fake_audit(tmp_path / "old", [f"x/{i}.png" for i in range(100)], ["cat"] * 100,
                                          np.zeros(100)), [0.0, 0.03])
    result = check_audit(load_audit(audit_10pct), Thresholds(max_rise=0.05, rate_bound="lower"), load_audit(old))
    (verdict,) = result.verdicts  # the new audit has no interval: the estimates, 0% → 10%, are compared
    assert verdict.value == pytest.approx(0.10) and not verdict.passed
    assert "the audit has no interval for its noise rate, so --rate-bound lower --max-rise compared the estimates" \
        in result.caveats
    with pytest.raises(UsageError, match="with --baseline --rate-bound reads only --max-rise"):
        check_audit(load_audit(audit_10pct), Thresholds(max_rise=0.05, max_noise_rate=0.1, rate_bound="lower"),
                    load_audit(old))


def test_check_baseline_counts_only_new_suspects(tmp_path):
    labels = ["cat"] * 50 + ["dog"] * 50
    paths = [f"{c}/{i}.png" for i, c in enumerate(labels)]
    p = np.zeros(100)
    p[90:] = 1.0
    old = load_audit(write_fake_audit(tmp_path / "old", paths, labels, p))
    # the dataset grows by 20 clean samples and 2 new mislabeled ones; one old sample is newly flagged
    labels2 = labels + ["cat"] * 22
    paths2 = paths + [f"new/{i}.png" for i in range(22)]
    p2 = np.concatenate([p, np.zeros(22)])
    p2[[5, 120, 121]] = 1.0
    new = load_audit(write_fake_audit(tmp_path / "new", paths2, labels2, p2))
    result = check_audit(new, Thresholds(max_issues=3, max_noise_rate=0.1), old)
    assert result.scope == "new since the baseline" and result.n_samples == 22
    assert sorted(result.new_suspects) == ["cat/5.png", "new/20.png", "new/21.png"]
    by_name = {v.name: v for v in result.verdicts}
    assert by_name["max-issues"].value == 3 and by_name["max-issues"].passed
    assert by_name["max-noise-rate"].value == pytest.approx(2 / 22) and by_name["max-noise-rate"].passed
    assert not check_audit(new, Thresholds(max_issues=2), old).passed
    assert not check_audit(new, Thresholds(max_issues=3)).passed  # 13 issues without the baseline
    res = runner.invoke(app, ["check", str(tmp_path / "new"), "--baseline", str(tmp_path / "old"),
                              "--max-issues", "3"])
    assert res.exit_code == 0 and "new since the baseline (22 samples)" in res.output


def test_check_thresholds_from_toml(audit_10pct, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.labelaudit.check]\n'
                                            'max-noise-rate = 0.05\nmax-issues = 50\n')
    monkeypatch.chdir(project / "sub")  # found from a subfolder, as in a monorepo
    res = runner.invoke(app, ["check", str(audit_10pct)])
    assert res.exit_code == 1 and "pyproject.toml" in res.output and "max-noise-rate" in res.output
    res = runner.invoke(app, ["check", str(audit_10pct), "--max-noise-rate", "0.2"])  # the command line wins
    assert res.exit_code == 0, res.output
    (project / "sub" / "labelaudit.toml").write_text("[check]\nmax-class-noise-rate = 0.1\n")
    res = runner.invoke(app, ["check", str(audit_10pct)])  # the nearer file wins
    assert res.exit_code == 1 and "max-class-noise-rate" in res.output and "max-issues" not in res.output
    (project / "sub" / "labelaudit.toml").write_text("[check]\nmax-noise = 0.1\n")
    res = runner.invoke(app, ["check", str(audit_10pct)])
    assert res.exit_code == 2 and "unknown check setting 'max-noise'" in res.output
    with pytest.raises(UsageError, match="expected a rate"):
        load_thresholds(_write(tmp_path / "bad.toml", "[check]\nmax-noise-rate = 5\n"))


def _write(path, text):
    path.write_text(text)
    return path


def test_check_errors_exit_2_not_1(tmp_path):
    """1 means "a threshold was passed"; anything that stops the check itself is 2."""
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["check", str(tmp_path / "empty"), "--max-issues", "1"])  # data with no images
    assert res.exit_code == 2 and "labelaudit: error:" in res.output and "Traceback" not in res.output
    with pytest.raises(UsageError, match="not a labelaudit audit folder"):
        load_audit(tmp_path / "empty")


# --- export, show, report on a real scan ---------------------------------------------------------

def _tree_digest(root):
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        h.update(str(f.relative_to(root)).encode())
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def test_export_round_trip_relabel(scanned, tmp_path):
    tmp, truth = scanned
    before = _tree_digest(tmp / "images")
    res = runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(tmp_path / "clean.jsonl"),
                              "--mode", "relabel"])
    assert res.exit_code == 0, res.output
    assert "6 relabelled" in res.output
    assert f"--root {tmp / 'images'}" in res.output  # how to read it back
    rows = pd.read_json(tmp_path / "clean.jsonl", lines=True)
    assert rows.columns.tolist() == ["path", "label", "weight", "original_label", "changed"]
    assert len(rows) == 72 and rows["changed"].sum() == 6
    root = tmp / "images"
    expected = {str(root / rel): colour for rel, colour in truth.items()}
    assert dict(zip(rows["path"], rows["label"])) == expected  # every label is now the true colour
    # scan --manifest reads it back with the intended labels
    with pytest.raises(UsageError, match="72 path.s. lie outside the root.*--allow-outside-root"):
        scan(manifest=tmp_path / "clean.jsonl", out=None, **FAST)  # absolute paths outside the manifest's folder
    again = scan(manifest=tmp_path / "clean.jsonl", root=root, out=None, **FAST)
    assert dict(zip(again.samples["path"], again.samples["given_label"])) == expected
    assert again.summary["n_label_issues"] == 0
    assert _tree_digest(tmp / "images") == before  # the input is never modified


@pytest.mark.parametrize("mode, fmt, n_rows", [("drop", "csv", 66), ("weight", "parquet", 72)])
def test_export_drop_and_weight(scanned, tmp_path, mode, fmt, n_rows):
    tmp, truth = scanned
    out = tmp_path / f"clean.{fmt}"
    res = runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(out), "--mode", mode])
    assert res.exit_code == 0, res.output
    rows = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert len(rows) == n_rows and not rows["changed"].any()
    if mode == "drop":  # what is left is exactly the correctly labelled images
        assert all(truth[str(p).split("images/", 1)[1]] == lab for p, lab in zip(rows["path"], rows["label"]))
    else:
        audit = load_audit(tmp / "audit")
        np.testing.assert_allclose(rows["weight"], audit.samples["weight"])


def test_export_folder_of_links_scans_clean(scanned, tmp_path):
    tmp, truth = scanned
    res = runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(tmp_path / "tree"), "--mode", "folder",
                              "--min-confidence", "0.0"])
    assert res.exit_code == 0, res.output
    links = sorted(p for p in (tmp_path / "tree").rglob("*.png"))
    assert len(links) == 72 and all(p.is_symlink() for p in links)
    assert all(p.parent.name == truth[f"{p.resolve().parent.name}/{p.name}"] for p in links)
    res = runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(tmp_path / "tree"), "--mode", "folder"])
    assert res.exit_code == 2 and "not an empty folder" in res.output
    res = runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(tmp_path / "copies"), "--mode", "folder",
                              "--copy"])
    copies = list((tmp_path / "copies").rglob("*.png"))
    assert res.exit_code == 0 and len(copies) == 66 and not any(p.is_symlink() for p in copies)
    res = runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(tmp / "images" / "x"), "--mode", "folder"])
    assert res.exit_code == 2 and "inside the scanned image folder" in res.output
    res = runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and "cannot tell the format" in res.output


def test_show_tables_and_label_filter(scanned):
    tmp, _ = scanned
    res = runner.invoke(app, ["show", str(tmp / "audit"), "--top", "4"])
    assert res.exit_code == 0, res.output
    assert "Top 4 of 6 suspects" in res.output and "Noise rate per class" in res.output
    assert res.output.count(".png") == 4
    res = runner.invoke(app, ["show", str(tmp / "audit"), "--label", "red"])
    assert res.exit_code == 0 and "Top 2 of 2 suspects given 'red'" in res.output
    assert res.output.count("red/") == 2 and "green/" not in res.output
    res = runner.invoke(app, ["show", str(tmp / "audit"), "--label", "purple"])
    assert res.exit_code == 2 and "no such class" in res.output


def test_report_content(scanned, tmp_path):
    tmp, _ = scanned
    html = (tmp / "audit" / "report.html").read_text()
    assert html.count('<div class="card">') == 6 and html.count('src="data:image/jpeg;base64,') == 6
    assert html.count('src="data:image/png;base64,') == 3  # histogram, class rates, transition heatmap
    assert "8.3%" in html and "estimated noise rate" in html and "Suspects: all 6" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
    res = runner.invoke(app, ["report", str(tmp / "audit"), "--out", str(tmp_path / "r.html"), "--top", "2"])
    assert res.exit_code == 0, res.output
    small = (tmp_path / "r.html").read_text()
    assert small.count('src="data:image/jpeg;base64,') == 2 and "Suspects: the top 2 of 6" in small


def test_nothing_flagged_lists_the_top_of_the_ranking(scanned):
    """With no sample flagged, show's table and the report's grid hold the top of the ranking, marked as
    not flagged, instead of nothing (the noise model can count 0 where the ranking puts errors on top)."""
    from dataclasses import replace

    from rich.console import Console

    from labelaudit.cli.summary import render_review
    from labelaudit.report import render_report

    tmp, _ = scanned
    audit = load_audit(tmp / "audit")
    audit = replace(audit, samples=audit.samples.assign(is_label_issue=False))
    top3 = audit.samples.sort_values("rank")["path"].head(3).tolist()
    html = render_report(audit, top=3)
    assert "Suspects: no label issues flagged" in html and "The 3 highest-ranked samples" in html
    assert html.count('<div class="card">') == 3 and all(f'alt="{p}"' in html for p in top3)
    console = Console(record=True, width=200)
    render_review(console, audit.suspects, audit.ranked, 3)
    text = console.export_text()
    assert "No label issues flagged. The 3 highest-ranked samples (not flagged" in text
    assert [p for p in audit.samples["path"] if p in text] == sorted(top3, key=list(audit.samples["path"]).index)
    console = Console(record=True, width=200)
    render_review(console, audit.suspects, audit.ranked, 0)  # --top 0: nothing listed, just the verdict
    assert console.export_text().strip() == "No label issues flagged."


@pytest.mark.slow
def test_check_given_data_scans_first(tmp_path, monkeypatch):
    from .conftest import make_color_folder

    monkeypatch.chdir(tmp_path)
    make_color_folder(tmp_path / "images")
    res = runner.invoke(app, ["check", str(tmp_path / "images"), "--out", str(tmp_path / "audit"),
                              "--max-issues", "72", "--epochs", "3", "--image-size", "16", "--augment", "none",
                              "--proxy-runs", "2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "audit" / "run.json").is_file() and "PASS  label issues" in res.output
    run = load_audit(tmp_path / "audit").run
    assert run["config"]["epochs"] == 3 and run["noise_model"]["interval"]["runs"]["seeds"] == [0, 1]


def test_report_stays_light_for_a_large_audit(tmp_path):
    """100k samples: only the top N suspects become images, so the page stays small."""
    from labelaudit.report import render_report

    n = 100_000
    labels = [f"c{i % 10}" for i in range(n)]
    p = np.zeros(n)
    p[::10] = 0.9
    audit = load_audit(write_fake_audit(tmp_path / "big", [f"x/{i}.png" for i in range(n)], labels, p))
    page = render_report(audit, top=48)
    assert page.count('<div class="card">') == 48 and "Suspects: the top 48 of 10,000" in page
    assert len(page.encode()) < 1_000_000


def test_report_gives_the_model_range(audit_10pct):
    from labelaudit.report import render_report

    run_json = audit_10pct / "run.json"
    run = json.loads(run_json.read_text())
    assert "could be" not in render_report(load_audit(audit_10pct))
    run["summary"]["noise_rate_model_range"] = [0.02, 0.1]
    run_json.write_text(json.dumps(run))
    page = render_report(load_audit(audit_10pct))
    assert "could be 2.0%–10.0%: a mixture component straddles a margin of 0" in page


def test_report_says_how_many_look_like_images_of_no_class(audit_10pct):
    from labelaudit.report import render_report

    run_json = audit_10pct / "run.json"
    run = json.loads(run_json.read_text())
    assert "no class" not in render_report(load_audit(audit_10pct))
    run["noise_model"].update({"weights": [0.08, 0.92], "no_class": [True, False]})
    run_json.write_text(json.dumps(run))
    assert "About 8 of the issues look like images of no class" in render_report(load_audit(audit_10pct))


def test_export_verify_draws_a_worksheet_per_given_label(scanned, tmp_path):
    """--mode verify: per_class random samples of every given label, label left empty, seeded."""
    tmp, truth = scanned
    out = tmp_path / "verify.csv"
    res = runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(out), "--mode", "verify",
                              "--per-class", "5", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "15 samples to verify" in res.output and f"--trusted {out}" in res.output
    rows = pd.read_csv(out, keep_default_na=False)
    assert rows.columns.tolist() == ["path", "label", "given_label"]
    assert (rows["label"] == "").all() and rows["path"].is_unique
    assert rows["given_label"].value_counts().to_dict() == {"blue": 5, "green": 5, "red": 5}
    root = tmp / "images"
    assert all(p.startswith(str(root)) and p[len(str(root)) + 1:] in truth for p in rows["path"])
    assert all(p[len(str(root)) + 1:].split("/")[0] == g for p, g in zip(rows["path"], rows["given_label"]))
    again = tmp_path / "again.csv"
    runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(again), "--mode", "verify", "--per-class", "5",
                        "--seed", "1"])
    assert pd.read_csv(again, keep_default_na=False).equals(rows)  # same seed, same draw
    runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(again), "--mode", "verify", "--per-class", "5"])
    assert set(pd.read_csv(again)["path"]) != set(rows["path"])
    runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(again), "--mode", "verify", "--per-class", "30"])
    assert len(pd.read_csv(again)) == 72  # a class smaller than --per-class is drawn whole
    res = runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(again), "--mode", "verify",
                              "--per-class", "0"])
    assert res.exit_code == 2 and "--per-class 0: expected a whole number of samples, 1 or more" in res.output
    res = runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(again), "--mode", "verify", "--copy"])
    assert res.exit_code == 2 and "--copy do not apply" in res.output


@pytest.mark.slow
def test_a_filled_in_worksheet_is_a_trusted_set(scanned, tmp_path):
    """export --mode verify, labels filled in with the truth, scan --trusted: every worksheet row is a
    verified sample of the data, the audit is checked on them, and the next worksheet skips them."""
    tmp, truth = scanned
    sheet = tmp_path / "sheet" / "verify.csv"  # a folder of its own, outside the images' folder
    sheet.parent.mkdir()
    assert runner.invoke(app, ["export", str(tmp / "audit"), "--out", str(sheet), "--mode", "verify",
                               "--per-class", "8"]).exit_code == 0
    rows = pd.read_csv(sheet, keep_default_na=False)
    root = str(tmp / "images")
    rel = [p[len(root) + 1:] for p in rows["path"]]
    rows["label"] = [truth[r] for r in rel]  # the person's verdict: the image's true colour
    partial = rows.copy()
    partial.loc[:2, "label"] = ""
    partial.to_csv(sheet, index=False)
    with pytest.raises(Exception, match="3 row.s. cannot be used.*empty label"):
        scan(tmp / "images", out=None, trusted=str(sheet), **FAST)
    rows.to_csv(sheet, index=False)
    out = tmp_path / "audit"
    scan(tmp / "images", out=out, trusted=str(sheet), cache_dir=str(tmp / "cache"), **FAST)
    run = json.loads((out / "run.json").read_text())
    wrong = sum(r.split("/")[0] != truth[r] for r in rel)
    assert run["trusted"]["n"] == 24 and run["trusted"]["check"]["n_in_data"] == 24
    assert run["trusted"]["check"]["n_given_wrong"] == wrong
    samples = pd.read_parquet(out / "samples.parquet")
    verified = samples.dropna(subset=["verified_label"])
    assert dict(zip(verified["path"], verified["verified_label"])) == dict(zip(rel, rows["label"]))
    nxt = tmp_path / "next.csv"
    assert runner.invoke(app, ["export", str(out), "--out", str(nxt), "--mode", "verify",
                               "--per-class", "30"]).exit_code == 0
    assert len(pd.read_csv(nxt)) == 72 - 24 and not set(pd.read_csv(nxt)["path"]) & set(rows["path"])


def test_trusted_paths_outside_its_folder_must_be_images_of_the_data(color_folder, tmp_path):
    root, _ = color_folder
    stray = tmp_path / "elsewhere" / "stray.png"
    stray.parent.mkdir()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(stray)
    sheet = tmp_path / "sheet" / "trusted.csv"
    sheet.parent.mkdir()
    inside = sorted(str(p) for p in root.glob("red/*.png"))[:2]
    pd.DataFrame({"path": [*inside, str(stray)], "label": ["red", "red", "red"]}).to_csv(sheet, index=False)
    with pytest.raises(UsageError, match=r"1 path\(s\) lie outside the root .* and are not images of the data "
                                         r".*stray.png.*move the file next to its images, or --allow-outside-root"):
        scan(root, out=None, trusted=str(sheet), **FAST)


def test_check_help_shows_the_config_table_name():
    """Rich reads [tool.labelaudit.check] in a help text as markup and drops it unless it is escaped."""
    res = runner.invoke(app, ["check", "--help"], env={"COLUMNS": "240"})
    assert res.exit_code == 0
    assert "pyproject.toml [tool.labelaudit.check]]" in " ".join(res.output.replace("│", " ").split())
