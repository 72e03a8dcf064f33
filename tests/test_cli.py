"""The CLI end to end through Typer's CliRunner, on a tiny image folder the test creates."""
import json
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from labelaudit import __version__
from labelaudit.cli import app

from .conftest import COLORS, FAST, FAST_ARGS, make_color_folder

runner = CliRunner()


CONTRACT = {
    "sample_id": "int64", "path": "string", "given_label": "string", "score": "float64",
    "p_mislabeled": "float64", "is_label_issue": "bool", "label_score": "float64", "rank": "int64",
    "predicted_label": "string", "predicted_confidence": "float64", "weight": "float64",
    "aul": "float64", "aum": "float64",
}


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """One scan of a folder with 6 flipped labels and four awkward files, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("cli")
    root = tmp / "images"
    truth = make_color_folder(root)
    Image.new("L", (20, 20), 90).save(root / "red" / "gray.png")
    Image.new("RGBA", (20, 20), (30, 190, 40, 128)).save(root / "green" / "alpha.png")
    Image.new("RGB", (20, 20), (30, 40, 200)).convert("CMYK").save(root / "blue" / "cmyk.jpg")
    (root / "blue" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp / "audit"
    res = runner.invoke(app, ["scan", str(root), "--out", str(out), "--cache-dir", str(tmp / "cache"), *FAST_ARGS])
    return res, out, truth


def test_scan_exits_zero_and_prints_summary(audited):
    res, out, _ = audited
    assert res.exit_code == 0, res.output
    assert "Estimated noise rate" in res.output and "Top" in res.output and str(out) in res.output


def test_samples_has_every_contract_column(audited):
    _, out, _ = audited
    df = pd.read_parquet(out / "samples.parquet")
    for col, dtype in CONTRACT.items():
        assert col in df.columns, col
        if dtype == "string":
            assert pd.api.types.is_string_dtype(df[col]), (col, df[col].dtype)
        else:
            assert str(df[col].dtype) == dtype, (col, df[col].dtype)
    n = len(df)
    assert n == 75  # 72 colour images + gray + alpha + cmyk; the corrupt file is not a sample
    assert df["sample_id"].tolist() == list(range(n))
    assert sorted(df["rank"]) == list(range(1, n + 1))
    assert df["p_mislabeled"].between(0, 1).all()
    np.testing.assert_allclose(df["label_score"], 1 - df["p_mislabeled"])
    np.testing.assert_allclose(df["weight"], 1 - df["p_mislabeled"])
    assert (df["is_label_issue"] == (df["p_mislabeled"] > 0.5)).all()
    assert df["predicted_label"].isin(list(COLORS)).all()
    assert df["predicted_confidence"].between(0, 1).all()
    assert not df[list(CONTRACT)].isna().any().any()
    # rank follows score, higher score = rank 1
    assert df.sort_values("rank")["score"].is_monotonic_decreasing
    assert pq.read_schema(out / "samples.parquet").metadata[b"labelaudit_schema"] == b"1"


def test_flipped_labels_rank_on_top_and_get_the_true_label(audited):
    _, out, truth = audited
    df = pd.read_parquet(out / "samples.parquet").set_index("path")
    flipped = [p for p, c in truth.items() if p.split("/")[0] != c]
    assert len(flipped) == 6
    assert df.loc[flipped, "rank"].max() <= 9  # all six among the 9 most suspicious of 75
    assert (df.loc[flipped, "predicted_label"] == [truth[p] for p in flipped]).all()
    assert df.loc[flipped, "is_label_issue"].all()


def test_other_files_match_the_contract(audited):
    _, out, _ = audited
    samples = pd.read_parquet(out / "samples.parquet")
    suspects = pd.read_parquet(out / "suspects.parquet")
    assert suspects["path"].tolist() == samples[samples["is_label_issue"]].sort_values("rank")["path"].tolist()
    weights = pd.read_parquet(out / "weights.parquet")
    assert weights.columns.tolist() == ["path", "given_label", "weight"]
    noise = pd.read_parquet(out / "noise.parquet")
    assert noise.columns.tolist() == ["scope", "label", "n_samples", "noise_rate", "n_mislabeled", "transition_rate"]
    np.testing.assert_allclose(noise["transition_rate"], noise["noise_rate"], atol=1e-9)  # T agrees (counts)
    assert noise["scope"].tolist() == ["dataset", "class", "class", "class"]
    assert noise["label"].tolist()[1:] == ["blue", "green", "red"]
    assert noise["n_samples"].tolist() == [75, 25, 25, 25]
    ds = noise.iloc[0]
    assert ds["noise_rate"] == pytest.approx(samples["p_mislabeled"].mean())
    np.testing.assert_allclose(noise["n_mislabeled"], noise["noise_rate"] * noise["n_samples"])
    traj = pd.read_parquet(out / "trajectories.parquet")
    assert traj.columns.tolist()[:4] == ["sample_id", "epoch", "loss", "margin"]
    assert len(traj) == 75 * FAST["epochs"] and traj["epoch"].min() == 1
    errors = pd.read_parquet(out / "errors.parquet")
    assert errors.to_dict("records") == [
        {"path": "blue/corrupt.jpg", "error": errors["error"].iloc[0]}]
    assert "truncated" in errors["error"].iloc[0]  # a JPEG header followed by junk
    run = json.loads((out / "run.json").read_text())
    flows = run["summary"].pop("top_flows")
    lo, hi = run["summary"].pop("noise_rate_interval")
    assert lo <= ds["noise_rate"] <= hi and hi - lo < 0.2
    model_range = run["summary"].pop("noise_rate_model_range")
    assert model_range is None or model_range[0] <= ds["noise_rate"] <= model_range[1]
    assert run["summary"].pop("noise_rate_runs") is None  # one proxy run (no --proxy-runs)
    # the proxy learned the colours: its predictions are the given label where that is right (69 of 75)
    assert run["summary"].pop("proxy_agreement") == pytest.approx(69 / 75)
    assert run["summary"].pop("proxy_kappa") == pytest.approx((69 / 75 - 1 / 3) / (1 - 1 / 3))
    assert run["summary"].pop("answers_for_2_points") == 75  # ±2 points on 75 samples: all of them
    assert run["summary"] == {"noise_rate": pytest.approx(ds["noise_rate"]), "n_label_issues": len(suspects),
                              "n_samples": 75, "n_errors": 1, "n_classes": 3}
    assert {(f["true"], f["noisy"]) for f in flows} == {("red", "green"), ("green", "blue"), ("blue", "red")}
    assert run["transition_source"]["estimator"] == "counts"
    assert "softmax" in run["transition_source"]["probabilities"]
    assert run["config"]["epochs"] == FAST["epochs"] and run["device"] == "cpu" and run["seed"] == 0
    assert {"torch", "python", "labelaudit"} <= set(run["versions"])
    assert {"load_s", "train_s", "score_s"} <= set(run["timings"])
    assert len(run["data"]["fingerprint"]) == 64


def test_transition_parquet(audited):
    """The colour folder files 2 of 24 (plus the extra images) of each class under the next class."""
    res, out, _ = audited
    t = pd.read_parquet(out / "transition.parquet")
    assert t.columns.tolist() == ["true_label", "noisy_label", "p"] and len(t) == 9
    wide = t.pivot(index="true_label", columns="noisy_label", values="p")
    np.testing.assert_allclose(wide.sum(axis=1), 1.0)
    for true, noisy in (("red", "green"), ("green", "blue"), ("blue", "red")):
        assert wide.loc[true, noisy] == pytest.approx(2 / 24, abs=0.05), (true, noisy)
        assert wide.loc[true].drop(true).idxmax() == noisy
    assert "Largest label flows" in res.output and "red → green" in res.output


@pytest.mark.slow
def test_json_output_and_quiet(color_folder, tmp_path):
    root, _ = color_folder
    res = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "a"), "--json", *FAST_ARGS])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["n_samples"] == 72 and 0 <= summary["noise_rate"] <= 1
    res = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "b"), "--quiet", *FAST_ARGS])
    assert res.exit_code == 0 and res.stdout.strip() == ""


@pytest.mark.slow
def test_score_is_an_alias_of_scores(color_folder, tmp_path):
    root, _ = color_folder
    res = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "a"), "--quiet", "--score", "aul", *FAST_ARGS])
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    samples = pd.read_parquet(tmp_path / "a" / "samples.parquet")
    assert run["scores"]["ran"] == ["aul"] and run["config"]["scores"] == "aul"
    np.testing.assert_allclose(samples["score"], samples["aul"])  # AUL: higher = more suspicious already


@pytest.mark.slow
def test_manifest_scan(color_folder, tmp_path):
    root, _ = color_folder
    rows = [(p.relative_to(root).as_posix(), p.parent.name) for p in sorted(root.rglob("*.png"))]
    pd.DataFrame(rows, columns=["file", "y"]).to_csv(tmp_path / "m.csv", index=False)
    res = runner.invoke(app, ["scan", "--manifest", str(tmp_path / "m.csv"), "--root", str(root),
                              "--path-column", "file", "--label-column", "y", "-o", str(tmp_path / "a"), *FAST_ARGS])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(tmp_path / "a" / "samples.parquet")
    assert df["path"].tolist() == [r[0] for r in rows]


@pytest.mark.parametrize("args,code,message", [
    (["scan", "/no/such/folder"], 2, "no such folder"),
    (["scan", "{root}", "--epochs", "0"], 2, "--epochs 0: expected auto or a whole number of epochs, at least 1"),
    (["scan", "{root}", "--device", "tpu"], 2, "--device"),
    (["scan", "{root}", "--model", "vgg99"], 2, "unknown model"),
    (["scan", "{root}", "--scores", "aum,loss"], 2, "--scores 'aum,loss'"),
    (["scan", "{root}", "--scores", "aum,limit", "--limit-average-epochs", "-1"], 2,
     "--limit-average-epochs -1.0: expected a number of epochs ≥ 0"),
    (["scan"], 2, "nothing to scan"),
])
def test_user_errors_are_one_line_without_traceback(color_folder, args, code, message):
    root, _ = color_folder
    res = runner.invoke(app, [a.format(root=root) for a in args])
    assert res.exit_code == code
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_one_class_and_empty_dataset_fail_with_exit_1(tmp_path):
    make_color_folder(tmp_path / "one", n_per_class=3, flips_per_class=0)
    for d in ("green", "blue"):
        for f in (tmp_path / "one" / d).iterdir():
            f.unlink()
        (tmp_path / "one" / d).rmdir()
    res = runner.invoke(app, ["scan", str(tmp_path / "one"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and "only one class" in res.output
    (tmp_path / "empty" / "a").mkdir(parents=True)
    res = runner.invoke(app, ["scan", str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and "no readable images" in res.output


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).output.strip() == f"labelaudit {__version__}"
    res = runner.invoke(app, ["scan", "--help"])
    assert res.exit_code == 0 and "--manifest" in res.output and "--device" in res.output
    # bracketed defaults are text, not Rich markup that swallows them
    wide = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "[default: small]" in wide.output
    assert "[default: the manifest's folder]" in runner.invoke(app, ["scan", "--help"], env={"COLUMNS": "200"}).output
    # the command list gives each command's summary on one line, not broken where its docstring is
    listing = runner.invoke(app, ["--help"], env={"COLUMNS": "300"}).output
    assert "score every sample, estimate the noise rate, and write ranked suspects" in listing


def _listed_options(help_text: str) -> list[str]:
    return re.findall(r"^│ (--[a-z-]+)", help_text, flags=re.M)


@pytest.mark.slow
def test_scan_help_lists_the_everyday_options_and_old_spellings_still_run(color_folder, tmp_path):
    """scan --help lists at most 18 options, the research knobs are not among them, the help's text
    column keeps 30+ characters at 80 columns; every setting still runs as --<setting> VALUE, and the
    defaults' spellings (--cache, --report, ...) too."""
    narrow = runner.invoke(app, ["scan", "--help"], env={"COLUMNS": "80"}).output
    listed = _listed_options(narrow)
    assert 12 <= len(listed) <= 18, listed
    assert {"--manifest", "--out", "--config", "--device", "--model", "--epochs", "--seed", "--trusted",
            "--threshold", "--resume", "--json"} <= set(listed)
    assert not {"--fusion", "--limit-beta", "--noise-model", "--anchor-quantile", "--pseudo-k"} & set(listed)
    assert "CSV/TSV/Parquet/JSONL manifest" in narrow
    root, _ = color_folder
    spelled = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "a"), "-q", "--cache", "--report",
                                  "--no-compile", "--trusted-calibration", *FAST_ARGS])
    assert spelled.exit_code == 0, spelled.output
    config = json.loads((tmp_path / "a" / "run.json").read_text())["config"]
    assert (tmp_path / "a" / "report.html").exists() and config["cache"] and config["trusted_calibration"]
    off = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "b"), "-q", "--no-cache", "--no-report",
                              *FAST_ARGS])
    assert off.exit_code == 0, off.output
    config = json.loads((tmp_path / "b" / "run.json").read_text())["config"]
    assert not (tmp_path / "b" / "report.html").exists() and not config["cache"] and not config["report"]


def test_a_proxy_that_learned_nothing_is_called_out(tmp_path, scanned):
    """Random labels on look-alike images, 2 epochs: the predictions agree with the labels about as
    often as chance, and the summary, report.html and check say the audit says little. A proxy that
    learned the colours (the shared scan, 6 of 72 labels flipped) gets no such note."""
    rng = np.random.default_rng(0)
    for i in range(120):
        folder = tmp_path / "noise" / f"c{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    args = [a for a in FAST_ARGS if not a.startswith("--epochs")]
    res = runner.invoke(app, ["scan", str(tmp_path / "noise"), "-o", str(tmp_path / "a"), "--epochs", "2", *args],
                        env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "a" / "run.json").read_text())["summary"]
    assert summary["proxy_kappa"] < 0.2 and "Untrustworthy audit: the proxy's predictions agree" in res.output
    assert "Untrustworthy audit:" in (tmp_path / "a" / "report.html").read_text()
    check = runner.invoke(app, ["check", str(tmp_path / "a"), "--max-issues", "1000"], env={"COLUMNS": "300"})
    assert check.exit_code == 0 and "in the audit, the proxy's predictions agree" in check.output
    learned = json.loads((scanned[0] / "audit" / "run.json").read_text())["summary"]
    assert learned["proxy_kappa"] > 0.8 and learned["proxy_agreement"] > 0.85
    assert "Untrustworthy" not in (scanned[0] / "audit" / "report.html").read_text()


def test_progress_lines_fit_80_columns():
    """A CI log is 80 columns: a stage's line keeps its numbers whole (no "0:00:…")."""
    from rich.console import Console

    from labelaudit.cli.progress import RichProgress

    console = Console(record=True, width=80, force_terminal=False)
    with RichProgress(console) as progress:
        progress("hash", 100_000, 100_000, {})
        progress("train", 2_370, 2_370, {"epoch": 30, "epochs": 30, "loss": 0.4321, "images_per_s": 1875.2})
    lines = [line for line in console.export_text().splitlines() if line.strip()]
    assert any("Reading files" in line and "100000/100000" in line for line in lines)
    train = next(line for line in lines if "Training proxy" in line)
    assert "epoch 30/30  loss 0.432  1,875 img/s" in train and "…" not in train


def test_more_proxy_runs_get_bars_and_a_summary_line_of_their_own():
    from rich.console import Console

    from labelaudit.cli.progress import RichProgress
    from labelaudit.cli.summary import render_overview

    console = Console(record=True, width=120, force_terminal=False)
    with RichProgress(console) as progress:
        progress("train", 10, 10, {"epoch": 2, "epochs": 2})
        progress("train run 2/3", 4, 10, {"epoch": 1, "epochs": 2})
    text = console.export_text()
    assert "Training proxy run 2/3" in text and text.count("Training proxy") == 2
    run = {"summary": {"noise_rate": 0.2, "noise_rate_interval": [0.181, 0.202], "noise_rate_runs": [0.2, 0.187, 0.189],
                       "n_samples": 10000, "n_classes": 10, "n_label_issues": 1900, "n_errors": 0},
           "noise_model": {"method": "margin mixture",
                           "interval": {"runs": {"seeds": [0, 1, 2], "epochs_run": [30, 28, 30],
                                                 "resumed_from_epoch": [0, 7]}}}}
    console = Console(record=True, width=300)
    render_overview(console, run)
    text = console.export_text()
    assert "interval 18.1%–20.2%" in text and "3 proxy runs (seeds 0, 1, 2) estimated 20.0%, 18.7%, 18.9%" in text
    assert "Proxy run 3 resumed from the checkpoint of epoch 7 of 30" in text and "Proxy run 2 resumed" not in text
