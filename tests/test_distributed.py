"""The scan under torchrun: two processes on the CPU (gloo), against one process on the same data.

Every test starts ``python -m torch.distributed.run --standalone --nproc-per-node 2`` (torchrun) in a
subprocess, as a user would."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from labelaudit.training.distributed import World, shard

from .conftest import FAST, FAST_ARGS, kill_at_first_checkpoint, make_color_folder

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
TABLES = ("samples", "suspects", "noise", "transition", "weights", "trajectories", "errors")


def _torchrun(args: list[str], tmp_path, timeout: int = 600) -> subprocess.CompletedProcess:
    env_cache = {"LABELAUDIT_CACHE": str(tmp_path / "cache")}
    import os

    return subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env_cache})


def test_a_global_batch_is_shared_in_near_equal_parts():
    import torch

    ids = torch.arange(11)
    parts = [shard(ids, World(rank=r, size=3)) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert shard(ids, World()) is ids


AGREE = textwrap.dedent("""
    import hashlib, json, sys
    import pandas as pd
    from labelaudit import scan
    from labelaudit.training.distributed import current, leave

    result = scan(sys.argv[1], out=sys.argv[2], **json.loads(sys.argv[3]))
    world = current()
    decided = result.samples[["path", "is_label_issue", "p_mislabeled", "rank", "score", "predicted_label", "weight"]]
    digest = hashlib.sha256(pd.util.hash_pandas_object(decided, index=False).values.tobytes()).hexdigest()
    with open(f"{sys.argv[4]}/rank{world.rank}.json", "w") as f:
        json.dump({"rank": world.rank, "size": world.size, "digest": digest,
                   "noise_rate": result.summary.noise_rate}, f)
    leave()
""")


@pytest.mark.slow
def test_two_ranks_record_every_sample_once_agree_and_write_what_one_process_writes(tmp_path):
    from labelaudit import scan

    root = tmp_path / "images"
    truth = make_color_folder(root)
    one = scan(root, out=tmp_path / "one", cache_dir=str(tmp_path / "cache-one"), **FAST)
    script = tmp_path / "agree.py"
    script.write_text(AGREE)
    (tmp_path / "ranks").mkdir()
    run = _torchrun([str(script), str(root), str(tmp_path / "two"), json.dumps(FAST), str(tmp_path / "ranks")],
                    tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    # the decoding was split: each rank wrote the pack of its half of the images into the shared cache
    packs = [json.loads(p.read_text())["keys"] for p in (tmp_path / "cache").rglob("*.json")]
    assert sorted(len(keys) for keys in packs) == [len(truth) // 2] * 2
    assert len({k for keys in packs for k in keys}) == len(truth)
    assert [r["size"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # the ranks decided the same, sample for sample
    # rank 0 alone wrote the audit: the same files and schemas as one process
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    for table in TABLES:
        a = pd.read_parquet(tmp_path / "one" / f"{table}.parquet")
        b = pd.read_parquet(tmp_path / "two" / f"{table}.parquet")
        assert list(a.columns) == list(b.columns) and a.dtypes.equals(b.dtypes), table
        assert len(a) == len(b), table
    run_json = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run_json["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert json.loads((tmp_path / "one" / "run.json").read_text())["distributed"]["world_size"] == 1
    # every sample recorded exactly once in every epoch, by whichever rank held it
    traj = pd.read_parquet(tmp_path / "two" / "trajectories.parquet")
    epochs = run_json["epochs_run"]
    assert len(traj) == len(truth) * epochs
    assert not traj.duplicated(["sample_id", "epoch"]).any() and traj["loss"].notna().all()
    # the same detection as one process on the flipped colours
    two = pd.read_parquet(tmp_path / "two" / "samples.parquet").set_index("path")
    flipped = {p for p, c in truth.items() if not p.startswith(c)}
    assert set(two[two["is_label_issue"]].index) == set(one.samples.set_index("path")
                                                         .query("is_label_issue").index) == flipped


@pytest.mark.slow
def test_two_ranks_detect_the_noisy_digits_as_well_as_one(tmp_path):
    """Digits with 40% of the labels flipped: the 2-rank scan's AUROC within 0.01 of the 1-rank scan's,
    and its noise rate within 0.03 of the truth."""
    from sklearn.metrics import roc_auc_score

    from labelaudit import scan
    from labelaudit.demo import make_demo_folder

    truth = make_demo_folder(tmp_path / "digits", noise=0.4, seed=0).set_index("path")
    one = scan(tmp_path / "digits", out=tmp_path / "one", device="cpu", augment="crop",
               cache_dir=str(tmp_path / "cache"))
    run = _torchrun(["-m", "labelaudit", "scan", str(tmp_path / "digits"), "--out", str(tmp_path / "two"),
                     "--device", "cpu", "--config", "augment = 'crop'", "-q"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    two = pd.read_parquet(tmp_path / "two" / "samples.parquet").set_index("path")
    flipped = truth.loc[two.index, "is_flipped"].to_numpy()
    auroc_two = roc_auc_score(flipped, two["score"])
    auroc_one = roc_auc_score(truth.loc[one.samples["path"], "is_flipped"].to_numpy(), one.samples["score"])
    assert auroc_two >= 0.99 and abs(auroc_two - auroc_one) <= 0.01
    rate = json.loads((tmp_path / "two" / "run.json").read_text())["summary"]["noise_rate"]
    assert abs(rate - flipped.mean()) <= 0.03


@pytest.mark.slow
def test_a_killed_two_rank_scan_resumes_to_the_outputs_of_an_uninterrupted_one(tmp_path):
    root = tmp_path / "images"
    make_color_folder(root, n_per_class=40)
    options = [*(a for a in FAST_ARGS if not a.startswith("--epochs")), "--epochs=30", "--device=cpu",
               f"--cache-dir={tmp_path / 'cache'}", "-q"]
    command = [*TORCHRUN, "-m", "labelaudit", "scan", str(root), *options]
    done = kill_at_first_checkpoint(command, tmp_path / "cut", epochs=30)
    subprocess.run([*command, "--out", str(tmp_path / "cut"), "--resume"], check=True, timeout=600,
                   capture_output=True)
    subprocess.run([*command, "--out", str(tmp_path / "full")], check=True, timeout=600, capture_output=True)
    cut = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert cut["resumed_from_epoch"] == done and cut["distributed"]["world_size"] == 2
    for table in ("samples", "trajectories"):
        a = pd.read_parquet(tmp_path / "full" / f"{table}.parquet")
        b = pd.read_parquet(tmp_path / "cut" / f"{table}.parquet")
        pd.testing.assert_frame_equal(a, b)


FAIL_ON_RANK_1 = textwrap.dedent("""
    import os, sys
    import labelaudit.dynamics.recorders as recorders
    from labelaudit.errors import TrainingError

    end_epoch = recorders.Recorder.end_epoch

    def failing(self, epoch, mean_loss):
        if os.environ["RANK"] == "1" and epoch == 1:
            raise TrainingError("injected failure on rank 1")
        return end_epoch(self, epoch, mean_loss)

    recorders.Recorder.end_epoch = failing
    from labelaudit.cli import main

    sys.argv = ["labelaudit", *sys.argv[1:]]
    main()
""")


@pytest.mark.slow
def test_an_error_on_rank_1_ends_both_ranks_with_one_line(tmp_path):
    root = tmp_path / "images"
    make_color_folder(root)
    script = tmp_path / "fail.py"
    script.write_text(FAIL_ON_RANK_1)
    start = time.monotonic()
    run = _torchrun([str(script), "scan", str(root), "--out", str(tmp_path / "out"), *FAST_ARGS, "--device=cpu",
                     "-q"], tmp_path, timeout=120)
    took = time.monotonic() - start
    assert run.returncode != 0
    ours = [line for line in run.stderr.splitlines() if line.startswith("labelaudit:")]
    assert ours == ["labelaudit: error: injected failure on rank 1"]
    assert "rank      : 0" in run.stderr and "SIGTERM" in run.stderr  # torchrun ended rank 0 as well
    assert took < 60  # not a hang: epoch 2 of a 72-image scan, then both ranks end
    assert not (tmp_path / "out" / "run.json").exists()
    np.testing.assert_(not (tmp_path / "out" / "samples.parquet").exists())


def test_a_process_that_lost_its_peer_says_so_in_one_line(monkeypatch, capsys):
    """A collective that fails because another rank ended (gloo's 'Connection closed by peer') is not
    reported as a bug: the process waits for torchrun to end it, and if it is still there, says why."""
    import typer

    from labelaudit.cli import _errors

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(_errors, "PEER_GRACE_S", 0.0)
    with pytest.raises(typer.Exit) as exit_:
        with _errors.handle_errors():
            raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer")
    assert exit_.value.exit_code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["labelaudit: error: process 0 stopped: another process of this torchrun run ended first "
                   "(its own message says why)"]
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: the same error is unexpected
    with pytest.raises(typer.Exit):
        with _errors.handle_errors():
            raise RuntimeError("[gloo] Connection closed by peer")
    assert "this is a bug" in capsys.readouterr().err


@pytest.mark.slow
def test_train_under_two_ranks_writes_one_model_that_learns_as_one_process(tmp_path):
    root = tmp_path / "images"
    make_color_folder(root)
    options = ["--epochs", "6", "--batch-size", "16", "--config", "image_size = 16", "--config", "workers = 1",
               "--config", "augment = 'none'", "--device", "cpu", "--eval", str(root), "-q"]
    one = subprocess.run([sys.executable, "-m", "labelaudit", "train", str(root), "--out", str(tmp_path / "one"),
                          *options], capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _torchrun(["-m", "labelaudit", "train", str(root), "--out", str(tmp_path / "two"), *options], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert a["distributed"]["world_size"] == 1 and b["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["metrics.json", "model.json", "model.pt"]
    assert len(b["epochs"]) == 6 and b["final"]["eval_accuracy"] >= a["final"]["eval_accuracy"] - 0.1


def test_the_meta_step_refuses_torchrun_with_one_line(monkeypatch, tmp_path):
    from labelaudit.errors import UsageError
    from labelaudit.robust import train

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="run in one process: start them without torchrun"):
        train(tmp_path, trusted=tmp_path / "t.csv", meta_reweight=True, out=None)
