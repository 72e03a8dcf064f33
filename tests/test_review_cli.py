"""labelaudit review end to end on the shared colour-folder audit: a worksheet of the draw, answers
from the truth, the verified estimates and review.json; bad answers get one line."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from labelaudit.cli import app

runner = CliRunner()


def _fill(sheet, truth, root, every=True, edit=None):
    """Answer a worksheet with the true colour of each image (as a careful person would)."""
    df = pd.read_csv(sheet, dtype=str, keep_default_na=False)
    rel = df["path"].map(lambda p: str(pd.io.common.os.path.relpath(p, root)))
    df["label"] = rel.map(truth)
    if not every:
        df.loc[df.index[::3], "label"] = ""  # rows not checked stay blank
    if edit:
        edit(df)
    df.to_csv(sheet, index=False)
    return df


def test_worksheet_answers_and_verified_estimates(reviewed, tmp_path):
    audit, images, truth = reviewed
    sheet = tmp_path / "verify.csv"
    res = runner.invoke(app, ["review", str(audit), "--worksheet", str(sheet), "--n", "40"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(sheet, dtype=str, keep_default_na=False)
    assert list(df.columns) == ["path", "given_label", "label", "sample_id", "stratum", "inclusion", "draw"]
    assert len(df) == 40 and (df["label"] == "").all() and df["sample_id"].is_unique
    again = runner.invoke(app, ["review", str(audit), "--worksheet", str(sheet)])
    assert again.exit_code == 2 and "exists already and may hold answers" in again.output  # never overwritten
    filled = _fill(sheet, truth, images, every=False)
    res = runner.invoke(app, ["review", str(audit), "--answers", str(sheet), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out == json.loads((audit / "review.json").read_text())
    answered = filled[filled["label"] != ""]
    assert out["answers"]["n"] == len(answered) and out["answers"]["n_none"] == 0
    true_rate = sum(1 for p, c in truth.items() if not p.startswith(c + "/")) / len(truth)  # 6 of 72
    low, high = out["noise_rate"]["interval"]
    assert low <= true_rate <= high and abs(out["noise_rate"]["value"] - true_rate) < 0.1
    assert set(out["classes"]) == {"blue", "green", "red"}
    text = runner.invoke(app, ["review", str(audit), "--answers", str(sheet)]).output
    assert "Verified noise rate:" in text and f"from {len(answered)} answers" in text


@pytest.mark.parametrize("edit,message", [
    (lambda df: df.__setitem__("label", ["purple"] + list(df["label"][1:])), "answers 'purple', not a class"),
    (lambda df: df.__setitem__("sample_id", ["9999"] + list(df["sample_id"][1:])), "sample_id '9999'"),
    (lambda df: df.__setitem__("label", [""] * len(df)), "no row has a label yet"),
])
def test_bad_answers_get_one_line_and_change_nothing(reviewed, tmp_path, edit, message):
    audit, images, truth = reviewed
    before = {p.name: p.read_bytes() for p in audit.iterdir() if p.is_file()}
    sheet = tmp_path / "verify.csv"
    assert runner.invoke(app, ["review", str(audit), "--worksheet", str(sheet), "--n", "10"]).exit_code == 0
    _fill(sheet, truth, images, edit=edit)
    res = runner.invoke(app, ["review", str(audit), "--answers", str(sheet)])
    assert res.exit_code in (1, 2) and message in res.output and len(res.output.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in audit.iterdir() if p.is_file()} == before


def test_none_answers_count_as_errors_and_apart(reviewed, tmp_path):
    audit, images, truth = reviewed
    sheet = tmp_path / "verify.csv"
    runner.invoke(app, ["review", str(audit), "--worksheet", str(sheet), "--n", "20"])
    _fill(sheet, truth, images, edit=lambda df: df.__setitem__("label", ["none"] * len(df)))
    out = json.loads(runner.invoke(app, ["review", str(audit), "--answers", str(sheet), "--json"]).output)
    assert out["answers"]["n_none"] == 20 and out["noise_rate"]["value"] == out["no_class_rate"]["value"] > 0.5
    both = runner.invoke(app, ["review", str(audit), "--worksheet", str(tmp_path / "w.csv"), "--answers", str(sheet)])
    assert both.exit_code == 2 and "not both" in both.output


def test_check_gates_on_the_verified_estimate(reviewed, tmp_path):
    audit, images, truth = reviewed
    sheet = tmp_path / "verify.csv"
    runner.invoke(app, ["review", str(audit), "--worksheet", str(sheet), "--n", "30"])
    _fill(sheet, truth, images)
    review = json.loads(runner.invoke(app, ["review", str(audit), "--answers", str(sheet), "--json"]).output)
    res = runner.invoke(app, ["check", str(audit), "--max-noise-rate", "0.5", "--rate-bound", "upper", "--json"])
    verdict = json.loads(res.stdout)
    assert res.exit_code == 0 and verdict["scope"] == "all samples, verified by 30 answers"
    (v,) = verdict["verdicts"]
    assert v["what"].startswith("verified dataset noise rate, upper end of its 95% interval")
    assert v["value"] == review["noise_rate"]["interval"][1]


def test_answers_rewrite_the_audit_in_place_and_reach_export(reviewed, tmp_path):
    audit, images, truth = reviewed
    assert "labelaudit review" in (audit / "report.html").read_text()  # the scan says what would make it sure
    before = pd.read_parquet(audit / "samples.parquet")
    scan_run = json.loads((audit / "run.json").read_text())
    sheet = tmp_path / "all.csv"
    assert runner.invoke(app, ["review", str(audit), "--worksheet", str(sheet), "--n", "1000"]).exit_code == 0
    filled = _fill(sheet, truth, images)  # every one of the 72 samples answered
    filled.loc[filled.index[0], "label"] = "none"  # and one image said to be of no class
    filled.to_csv(sheet, index=False)
    res = runner.invoke(app, ["review", str(audit), "--answers", str(sheet)])
    assert res.exit_code == 0, res.output
    assert "Label issues now flagged:" in res.output and "in place" in res.output
    s = pd.read_parquet(audit / "samples.parquet")
    rel = s["path"].astype(str)
    wrong = rel.map(lambda p: not p.startswith(truth[p] + "/")).to_numpy()
    none_path = str(pd.io.common.os.path.relpath(filled["path"].iloc[0], images))
    none_row = (rel == none_path).to_numpy()
    # every sample verified: p is what was verified, the flags are the true errors (and the no-class image)
    assert (s["p_mislabeled"].to_numpy() == (wrong | none_row)).all()
    assert (s["is_label_issue"].to_numpy() == (wrong | none_row)).all()
    assert s["verified_no_class"].to_numpy().sum() == 1 and s["verified_no_class"].to_numpy()[none_row].all()
    assert (s["verified_label"][~none_row] == rel[~none_row].map(truth)).all()
    assert (s["rank"] == before["rank"]).all() and (s["score"] == before["score"]).all()  # the ranking stays
    # the scan's own files are kept; run.json says verified, by how many answers
    pd.testing.assert_frame_equal(pd.read_parquet(audit / "unverified" / "samples.parquet"), before)
    run = json.loads((audit / "run.json").read_text())
    assert run["summary"]["verified"]["answers"] == 72 and run["summary"]["verified"]["no_class"] == 1
    assert run["summary"]["verified"]["unsupervised_noise_rate"] == scan_run["summary"]["noise_rate"]
    assert run["summary"]["noise_rate"] == pytest.approx((wrong | none_row).mean())
    assert run["summary"]["n_label_issues"] == int((wrong | none_row).sum())
    noise = pd.read_parquet(audit / "noise.parquet")
    assert noise["noise_rate"].iloc[0] == pytest.approx((wrong | none_row).mean())
    report = (audit / "report.html").read_text()
    assert "verified by 72 answers" in report and "verified noise rate" in report
    assert "labelaudit review</code>" not in report and "to know it within" not in report
    t = pd.read_parquet(audit / "transition.parquet")
    assert {"p", "p_audit", "p_verified"} <= set(t.columns)
    # export: the verified labels, the no-class image left out, in every mode
    for mode in ("drop", "relabel", "weight"):
        out = tmp_path / f"{mode}.csv"
        assert runner.invoke(app, ["export", str(audit), "--mode", mode, "--out", str(out)]).exit_code == 0
        m = pd.read_csv(out)
        assert len(m) == 71
        m_rel = m["path"].map(lambda p: str(pd.io.common.os.path.relpath(p, images)))
        assert (m["label"] == m_rel.map(truth)).all() and (m["weight"] == 1.0).all()


@pytest.mark.slow
def test_more_answers_start_again_from_the_scan_and_a_rescan_drops_them(reviewed, scanned, tmp_path):
    audit, images, truth = reviewed
    fresh = tmp_path / "fresh"
    shutil.copytree(audit, fresh)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    runner.invoke(app, ["review", str(audit), "--worksheet", str(first), "--n", "30", "--seed", "1"])
    _fill(first, truth, images)
    assert runner.invoke(app, ["review", str(audit), "--answers", str(first)]).exit_code == 0
    runner.invoke(app, ["review", str(audit), "--worksheet", str(second), "--n", "20", "--seed", "2"])
    _fill(second, truth, images)
    assert runner.invoke(app, ["review", str(audit), "--answers", str(second)]).exit_code == 0
    assert runner.invoke(app, ["review", str(fresh), "--answers", str(second)]).exit_code == 0
    # the second application equals applying the same answers to the scan's own audit
    pd.testing.assert_frame_equal(pd.read_parquet(audit / "samples.parquet"), pd.read_parquet(fresh / "samples.parquet"))
    from labelaudit import scan

    from .conftest import FAST

    scan(images, out=audit, cache_dir=str(scanned[0] / "cache"), **FAST)
    assert not (audit / "unverified").exists() and not (audit / "review.json").exists()
    stale = runner.invoke(app, ["review", str(audit), "--answers", str(second)])
    assert stale.exit_code == 0 or "earlier scan" in stale.output  # same data and seed: the same strata
