"""labelaudit demo: digits with known flips, audited; the audit finds them."""
from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from labelaudit.cli import app
from labelaudit.demo import demo, make_demo_folder

runner = CliRunner()


def test_demo_folder_has_the_flips_it_says(tmp_path):
    truth = make_demo_folder(tmp_path / "images", noise=0.2, seed=1)
    assert len(truth) == 1797 and truth["is_flipped"].sum() == round(0.2 * 1797)
    flipped = truth[truth["is_flipped"]]
    assert (flipped["given_label"] != flipped["true_label"]).all()
    assert (truth[~truth["is_flipped"]]["given_label"] == truth[~truth["is_flipped"]]["true_label"]).all()
    for rel, given in truth[["path", "given_label"]].head(20).itertuples(index=False):
        assert (tmp_path / "images" / rel).is_file() and rel.split("/")[0] == given


@pytest.mark.slow
def test_demo_audit_finds_the_flipped_digits(tmp_path):
    res = demo(tmp_path / "demo", noise=0.1, epochs=8)
    n = int(res.truth["is_flipped"].sum())
    assert res.auroc > 0.97 and res.found_in_top >= 0.85 * n
    assert res.result.summary["noise_rate"] == pytest.approx(0.1, abs=0.04)
    assert (tmp_path / "demo" / "audit" / "report.html").is_file()
    saved = pd.read_csv(tmp_path / "demo" / "truth.csv", dtype=str)
    assert saved["path"].tolist() == res.truth["path"].tolist()


def test_demo_never_writes_over_an_earlier_one(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "exists already" in res.output and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "e"), "--noise", "0.95"])
    assert res.exit_code == 2 and "--noise 0.95" in res.output
