"""Interruption loses nothing: a killed scan resumes from its last finished epoch and gives the
outputs of a run that never stopped; an interrupted decode keeps the images it finished."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from labelaudit import scan
from labelaudit.data import dataset
from labelaudit.training.checkpoint import CHECKPOINT_FILE
from labelaudit.errors import UsageError

from .conftest import FAST, kill_at_first_checkpoint, make_color_folder

RESUMABLE = dict(FAST, epochs=12)


class _StopAfterEpoch:
    """A progress callback that interrupts the scan (like Ctrl-C) when ``epoch`` of ``stage`` (the proxy's
    training, or ``train run k/K`` of --proxy-runs) has finished."""

    def __init__(self, epoch, stage="train"):
        self.epoch, self.stage = epoch, stage

    def __call__(self, stage, done, total, info):
        if stage == self.stage and info.get("epoch") == self.epoch and "loss" in info:
            raise KeyboardInterrupt


def _same_outputs(a, b):
    for name in ("samples.parquet", "trajectories.parquet", "noise.parquet", "transition.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name), check_exact=True)


@pytest.mark.slow
@pytest.mark.parametrize("scores", ["aum", "aum,limit"])
def test_interrupted_scan_resumes_to_the_same_outputs(color_folder, tmp_path, scores):
    root, _ = color_folder
    cache = str(tmp_path / "cache")
    scan(root, out=tmp_path / "full", cache_dir=cache, scores=scores, **RESUMABLE)
    with pytest.raises(KeyboardInterrupt):
        scan(root, out=tmp_path / "cut", cache_dir=cache, scores=scores, progress=_StopAfterEpoch(5), **RESUMABLE)
    saved = torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True)  # tensors and numbers only
    assert saved["epoch"] == 5
    assert not (tmp_path / "cut" / "run.json").exists()
    result = scan(root, out=tmp_path / "cut", cache_dir=cache, scores=scores, resume=True, **RESUMABLE)
    assert result.run["resumed_from_epoch"] == 5
    _same_outputs(tmp_path / "full", tmp_path / "cut")
    assert not (tmp_path / "cut" / CHECKPOINT_FILE).exists()  # a finished scan removes its checkpoint


@pytest.mark.slow
def test_interrupted_proxy_runs_resume_in_the_run_they_stopped(color_folder, tmp_path):
    """--proxy-runs 3 stopped in run 3: --resume keeps runs 1 and 2 as trained, goes on with run 3 from
    its last epoch, and ends with the audit and the pooled interval of a scan that never stopped."""
    root, _ = color_folder
    cache, options = str(tmp_path / "cache"), dict(RESUMABLE, proxy_runs=3, seed=3)
    full = scan(root, out=tmp_path / "full", cache_dir=cache, **options)
    with pytest.raises(KeyboardInterrupt):
        scan(root, out=tmp_path / "cut", cache_dir=cache, progress=_StopAfterEpoch(4, "train run 3/3"), **options)
    assert set(os.listdir(tmp_path / "cut")) == {CHECKPOINT_FILE, "checkpoint-run2.pt", "checkpoint-run3.pt"}
    assert torch.load(tmp_path / "cut" / "checkpoint-run3.pt", weights_only=True)["epoch"] == 4
    result = scan(root, out=tmp_path / "cut", cache_dir=cache, resume=True, **options)
    _same_outputs(tmp_path / "full", tmp_path / "cut")
    runs = result.run["noise_model"]["interval"]["runs"]
    assert result.run["resumed_from_epoch"] == 12 and runs["resumed_from_epoch"] == [12, 4]
    assert full.run["noise_model"]["interval"]["runs"]["resumed_from_epoch"] == [0, 0]
    assert result.summary["noise_rate_runs"] == full.summary["noise_rate_runs"]
    assert result.summary["noise_rate_interval"] == full.summary["noise_rate_interval"]
    assert sorted(os.listdir(tmp_path / "cut")) == sorted(os.listdir(tmp_path / "full"))  # no checkpoint is left


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_other_settings(color_folder, tmp_path):
    root, _ = color_folder
    with pytest.raises(KeyboardInterrupt):
        scan(root, out=tmp_path / "cut", cache_dir=str(tmp_path / "c"), progress=_StopAfterEpoch(2), **RESUMABLE)
    with pytest.raises(UsageError, match="--resume: .*other settings or other data"):
        scan(root, out=tmp_path / "cut", cache_dir=str(tmp_path / "c"), resume=True, **{**RESUMABLE, "lr": 0.01})
    with pytest.raises(UsageError, match="--resume needs an output folder"):
        scan(root, out=None, resume=True, **RESUMABLE)
    # without --resume the checkpoint is simply overwritten by a fresh run
    fresh = scan(root, out=tmp_path / "cut", cache_dir=str(tmp_path / "c"), **{**RESUMABLE, "lr": 0.01})
    assert fresh.run["resumed_from_epoch"] == 0


@pytest.mark.slow
def test_killed_scan_subprocess_resumes_like_an_uninterrupted_run(tmp_path):
    root = tmp_path / "images"
    make_color_folder(root, n_per_class=60)
    options = ["--cache-dir", str(tmp_path / "cache"), "--epochs", "30", "--image-size", "16", "--batch-size", "16",
               "--workers", "1", "--augment", "none", "-q"]
    command = [sys.executable, "-m", "labelaudit", "scan", str(root), *options]
    done = kill_at_first_checkpoint(command, tmp_path / "cut", epochs=30)
    subprocess.run([*command, "--out", str(tmp_path / "cut"), "--resume"], check=True, timeout=600)
    subprocess.run([*command, "--out", str(tmp_path / "full")], check=True, timeout=600)
    _same_outputs(tmp_path / "full", tmp_path / "cut")
    assert json.loads((tmp_path / "cut" / "run.json").read_text())["resumed_from_epoch"] == done


@pytest.mark.slow
def test_interrupted_decode_keeps_finished_images_in_the_cache(color_folder, tmp_path, monkeypatch):
    root, _ = color_folder  # 72 images
    monkeypatch.setattr(dataset, "CACHE_FLUSH", 9)

    def stop_midway(stage, done, total, info):
        if stage == "decode" and done >= 36:
            raise KeyboardInterrupt

    cache = str(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        scan(root, out=None, cache_dir=cache, progress=stop_midway, **FAST)
    again = scan(root, out=None, cache_dir=cache, **FAST)
    assert 27 <= again.run["data"]["n_cached"] < 72  # the finished packs were kept and are used
    assert again.run["data"]["n_cached"] + again.run["data"]["n_decoded"] == 72
    reference = scan(root, out=None, cache_dir=str(tmp_path / "other"), **FAST)
    pd.testing.assert_frame_equal(again.samples, reference.samples)  # the kept pixels are the right ones
