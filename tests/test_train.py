"""``labelaudit train`` and ``predict`` end to end on tiny colour folders, on CPU."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from labelaudit.cli import app
from labelaudit.errors import UsageError
from labelaudit.noise.transition import transition_matrix
from labelaudit.robust import TrainConfig, train

from .conftest import make_color_folder

runner = CliRunner()
TRAIN_FAST = ["--epochs=6", "--batch-size=16", "--workers=1", "--lr=0.05", "--augment=none"]


def test_train_with_weights_then_predict(scanned, clean_eval, tmp_path):
    tmp, truth = scanned
    out = tmp_path / "model"
    res = runner.invoke(app, ["train", str(tmp / "images"), "--audit", str(tmp / "audit"), "--out", str(out),
                              "--eval", str(clean_eval), "--weights", *TRAIN_FAST])
    assert res.exit_code == 0, res.output
    assert "Held-out accuracy" in res.output and "weights" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["epochs"]] == list(range(1, 7))
    assert metrics["final"]["eval_accuracy"] >= 0.9
    assert metrics["best"]["eval_accuracy"] == max(r["eval_accuracy"] for r in metrics["epochs"])
    audit = pd.read_parquet(tmp / "audit" / "samples.parquet")
    assert metrics["data"]["mean_weight"] == pytest.approx(audit["weight"].mean(), rel=1e-5)
    info = json.loads((out / "model.json").read_text())
    assert info["classes"] == ["blue", "green", "red"] and info["image_size"] == 16
    state = torch.load(out / "model.pt", weights_only=True)  # tensors only, no pickled objects
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    preds_path = tmp_path / "preds.parquet"
    res = runner.invoke(app, ["predict", str(out), str(clean_eval), "--out", str(preds_path), "--workers=1"])
    assert res.exit_code == 0, res.output
    preds = pd.read_parquet(preds_path)
    assert len(preds) == 30 and {"p_blue", "p_green", "p_red", "confidence"} <= set(preds.columns)
    assert (preds["predicted_label"] == preds["given_label"]).mean() >= 0.9
    assert preds[["p_blue", "p_green", "p_red"]].sum(axis=1).round(5).eq(1).all()

    # a second run against the first as a baseline prints the comparison line
    res = runner.invoke(app, ["train", str(tmp / "images"), "--out", str(tmp_path / "plain"), "--eval", str(clean_eval),
                              "--baseline", str(out), *TRAIN_FAST])
    assert res.exit_code == 0, res.output
    assert "vs baseline" in res.output and "points" in res.output


def test_drop_and_relabel_follow_the_audit(scanned, tmp_path):
    tmp, _ = scanned
    audit = pd.read_parquet(tmp / "audit" / "samples.parquet")
    flagged = int(audit["is_label_issue"].sum())
    assert flagged > 0
    fast = dict(epochs=2, batch_size=16, workers=1, augment="none")
    dropped = train(tmp / "images", audit=tmp / "audit", out=None, drop_issues=True, **fast)
    assert dropped.metrics["data"]["n_dropped"] == flagged
    assert dropped.metrics["data"]["n_trained"] == len(audit) - flagged
    relabelled = train(tmp / "images", audit=tmp / "audit", out=None, relabel=True, min_confidence=0.0, **fast)
    assert relabelled.metrics["data"]["n_relabelled"] == flagged


def test_corrections_sln_ema_and_label_correction_run(scanned, clean_eval, tmp_path):
    tmp, _ = scanned
    fast = dict(epochs=4, batch_size=16, workers=1, augment="none")
    for correction in ("forward", "backward"):
        result = train(tmp / "images", audit=tmp / "audit", out=None, eval_data=clean_eval, correction=correction,
                       **fast)
        t, _ = transition_matrix(pd.read_parquet(tmp / "audit" / "transition.parquet"))
        info = result.metrics["transition"]
        assert info["condition_number"] == pytest.approx(np.linalg.cond(t), rel=1e-6)
        if correction == "backward":  # T mixed with I until its condition number is at most max_condition
            assert info["condition_number_used"] <= 100.0 + 1e-6
        assert result.final_accuracy >= 0.8
    result = train(tmp / "images", out=None, eval_data=clean_eval, sln=0.5, ema=0.9, label_correction=2, **fast)
    rows = result.metrics["epochs"]
    assert all("eval_accuracy_raw" in r for r in rows)  # the raw model, next to the EMA one
    assert result.metrics["model_evaluated"].startswith("momentum")
    assert all(math.isfinite(r["train_loss"]) for r in rows)


def test_same_seed_same_model(scanned):
    tmp, _ = scanned
    fast = dict(epochs=2, batch_size=16, workers=1, augment="crop", sln=0.3)
    a = train(tmp / "images", out=None, seed=5, **fast)
    b = train(tmp / "images", out=None, seed=5, **fast)
    assert a.metrics["epochs"] == b.metrics["epochs"]


def test_train_usage_errors(scanned, tmp_path):
    tmp, _ = scanned
    res = runner.invoke(app, ["train", str(tmp / "images"), "--weights", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2
    assert "need(s) an audit: pass --audit" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["train", str(tmp / "images"), "--drop-issues", "--relabel", "--audit",
                              str(tmp / "audit")])
    assert res.exit_code == 2 and "choose one" in res.output
    other = tmp_path / "other"
    make_color_folder(other, n_per_class=4, flips_per_class=0, seed=3)
    with pytest.raises(UsageError, match="not in the audit"):
        train(other, audit=tmp / "audit", out=None, weights=True, epochs=1, workers=1)
    with pytest.raises(UsageError, match="--sln"):
        TrainConfig(sln=-1).validate()
    res = runner.invoke(app, ["predict", str(tmp_path), str(tmp / "images")])
    assert res.exit_code == 2 and "not a model folder" in res.output
