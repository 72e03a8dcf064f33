"""labelaudit review end to end on the shared colour-folder audit: a worksheet of the draw, answers
from the truth, the verified estimates and review.json; bad answers get one line."""
from __future__ import annotations

import json

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


def test_worksheet_answers_and_verified_estimates(scanned, tmp_path):
    folder, truth = scanned
    audit = folder / "audit"
    sheet = tmp_path / "verify.csv"
    res = runner.invoke(app, ["review", str(audit), "--worksheet", str(sheet), "--n", "40"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(sheet, dtype=str, keep_default_na=False)
    assert list(df.columns) == ["path", "given_label", "label", "sample_id", "stratum", "inclusion"]
    assert len(df) == 40 and (df["label"] == "").all() and df["sample_id"].is_unique
    again = runner.invoke(app, ["review", str(audit), "--worksheet", str(sheet)])
    assert again.exit_code == 2 and "exists already and may hold answers" in again.output  # never overwritten
    filled = _fill(sheet, truth, folder / "images", every=False)
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
def test_bad_answers_get_one_line(scanned, tmp_path, edit, message):
    folder, truth = scanned
    sheet = tmp_path / "verify.csv"
    assert runner.invoke(app, ["review", str(folder / "audit"), "--worksheet", str(sheet), "--n", "10"]).exit_code == 0
    _fill(sheet, truth, folder / "images", edit=edit)
    res = runner.invoke(app, ["review", str(folder / "audit"), "--answers", str(sheet)])
    assert res.exit_code in (1, 2) and message in res.output and len(res.output.strip().splitlines()) == 1


def test_none_answers_count_as_errors_and_apart(scanned, tmp_path):
    folder, truth = scanned
    sheet = tmp_path / "verify.csv"
    runner.invoke(app, ["review", str(folder / "audit"), "--worksheet", str(sheet), "--n", "20"])
    _fill(sheet, truth, folder / "images", edit=lambda df: df.__setitem__("label", ["none"] * len(df)))
    out = json.loads(runner.invoke(app, ["review", str(folder / "audit"), "--answers", str(sheet), "--json"]).output)
    assert out["answers"]["n_none"] == 20 and out["noise_rate"]["value"] == out["no_class_rate"]["value"] > 0.5
    assert runner.invoke(app, ["review", str(folder / "audit")]).exit_code == 2  # neither --worksheet nor --answers


def test_check_gates_on_the_verified_estimate(scanned, tmp_path):
    folder, truth = scanned
    import shutil

    audit = tmp_path / "audit"
    shutil.copytree(folder / "audit", audit)
    sheet = tmp_path / "verify.csv"
    runner.invoke(app, ["review", str(audit), "--worksheet", str(sheet), "--n", "30"])
    _fill(sheet, truth, folder / "images")
    review = json.loads(runner.invoke(app, ["review", str(audit), "--answers", str(sheet), "--json"]).output)
    res = runner.invoke(app, ["check", str(audit), "--max-noise-rate", "0.5", "--rate-bound", "upper", "--json"])
    verdict = json.loads(res.stdout)
    assert res.exit_code == 0 and verdict["scope"] == "all samples, verified by 30 answers"
    (v,) = verdict["verdicts"]
    assert v["what"].startswith("verified dataset noise rate, upper end of its 95% interval")
    assert v["value"] == review["noise_rate"]["interval"][1]
