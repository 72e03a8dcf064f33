"""The Python API: scan() returns the tables, is deterministic, and a warm re-scan decodes nothing."""
import numpy as np
import pandas as pd
import pytest

from labelaudit import ScanConfig, scan
from labelaudit.errors import UsageError

from .conftest import FAST


@pytest.mark.slow
def test_scan_returns_tables_without_writing(color_folder, tmp_path, monkeypatch):
    root, truth = color_folder
    monkeypatch.chdir(tmp_path)
    result = scan(root, out=None, **FAST)
    assert result.out is None and not (tmp_path / "labelaudit-out").exists()
    assert len(result.samples) == 72 and result.classes == ["blue", "green", "red"]
    flipped = {p for p, c in truth.items() if p.split("/")[0] != c}
    assert set(result.suspects["path"].head(6)) == flipped
    assert result.summary["n_label_issues"] == int(result.samples["is_label_issue"].sum())
    assert result.suspects["rank"].is_monotonic_increasing


@pytest.mark.slow
def test_same_seed_same_outputs_and_warm_rescan(color_folder, tmp_path):
    root, _ = color_folder
    a = scan(root, out=tmp_path / "a", seed=3, **FAST)
    b = scan(root, out=tmp_path / "b", seed=3, **FAST)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "samples.parquet"),
                                  pd.read_parquet(tmp_path / "b" / "samples.parquet"))
    assert a.run["data"]["n_decoded"] == 72 and b.run["data"]["n_decoded"] == 0
    assert b.run["data"]["n_cached"] == 72
    c = scan(root, out=None, seed=4, **FAST)
    assert not (c.samples["aul"].to_numpy() == a.samples["aul"].to_numpy()).all()


@pytest.mark.slow
def test_config_and_overrides(color_folder):
    root, _ = color_folder
    with pytest.raises(UsageError, match="unknown scan option"):
        scan(root, out=None, epoch=3)
    with pytest.raises(UsageError, match="--threshold 1.5"):
        scan(root, out=None, threshold=1.5)
    result = scan(root, out=None, config=ScanConfig(**FAST), noise_model="aul-gmm", scores="aul")
    assert result.run["config"]["noise_model"] == "aul-gmm"
    assert (result.samples["score"] == result.samples["aul"]).all()
    assert "aul-gmm" in result.run["noise_model"]["method"]


def test_manifest_file_as_data_argument(color_folder, tmp_path):
    root, _ = color_folder
    rows = [(str(p), p.parent.name) for p in sorted(root.rglob("*.png"))]  # absolute paths
    pd.DataFrame(rows, columns=["path", "label"]).to_json(tmp_path / "m.jsonl", orient="records", lines=True)
    result = scan(tmp_path / "m.jsonl", out=None, **FAST)
    assert result.run["data"]["source"] == "manifest"
    assert result.samples["path"].tolist() == [r[0] for r in rows]
    with pytest.raises(UsageError, match="not both"):
        scan(root, manifest=tmp_path / "m.jsonl", out=None)


@pytest.mark.slow
def test_scores_option_runs_limit_and_fuses(color_folder, tmp_path):
    root, truth = color_folder
    flipped = {p for p, c in truth.items() if p.split("/")[0] != c}
    result = scan(root, out=tmp_path / "a", scores="aul,aum,limit", fusion="rank-mean", **FAST)
    s = result.samples
    assert result.run["scores"]["ran"] == ["aul", "aum", "limit"]
    assert "rank-mean of aul, aum, limit" in result.run["scores"]["score"]
    assert result.run["scores"]["limit"]["model"] == "tiny"
    assert set(s.sort_values("limit_distance", ascending=False)["path"].head(6)) == flipped
    assert set(result.suspects["path"].head(6)) == flipped
    assert s["limit_distance"].between(0, 2 ** 0.5).all()
    traj = pd.read_parquet(tmp_path / "a" / "trajectories.parquet")
    assert traj["limit_distance"].notna().all() and len(traj) == 8 * 72
    # rank-mean of the three oriented scores, ranks 1..N over N
    expected = (s["aul"].rank() + (-s["aum"]).rank() + s["limit_distance"].rank()) / (3 * len(s))
    pd.testing.assert_series_equal(s["score"], expected, check_names=False)
    # AUM alone: no LIMIT column, the score is −AUM, and the proxy's own numbers are unchanged
    alone = scan(root, out=None, **FAST)  # the default: AUM alone
    assert "limit_distance" not in alone.samples and alone.run["scores"]["limit"] is None
    assert (alone.samples["score"] == -alone.samples["aum"]).all()
    pd.testing.assert_series_equal(alone.samples["aum"], s["aum"])
    with pytest.raises(UsageError, match="--scores 'aum,lmit'"):
        scan(root, out=None, scores="aum,lmit")


@pytest.mark.slow
def test_compile_option_compiles_the_training_network_for_real(color_folder):
    """``compile = true`` runs the proxy's training forward through torch.compile (inductor, which
    builds C++ kernels on the CPU: about a minute here): the same flags as the eager run, and the
    scores within float tolerance of it (compiled kernels fuse and reorder float operations)."""
    import torch._dynamo

    root, truth = color_folder
    options = {**FAST, "epochs": 4}
    plain = scan(root, out=None, **options)
    torch._dynamo.reset()
    compiled = scan(root, out=None, compile=True, **options)
    assert compiled.run["config"]["compile"] is True
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # something was compiled
    flagged = set(compiled.samples.loc[compiled.samples["is_label_issue"], "path"])
    assert flagged == set(plain.samples.loc[plain.samples["is_label_issue"], "path"])
    np.testing.assert_allclose(compiled.samples["aum"], plain.samples["aum"], atol=0.05)


def test_scan_gives_the_noise_model_the_given_labels(color_folder, monkeypatch):
    """The no-class rule of the margin mixture reads the given labels: scan() must pass them, in the
    samples' order, to the final fit (and the stopping check gets them from train_proxy)."""
    import numpy as np

    from labelaudit import pipeline

    seen = []
    real = pipeline.fit_noise

    def spy(name, **kwargs):
        seen.append(kwargs.get("given"))
        return real(name, **kwargs)

    monkeypatch.setattr(pipeline, "fit_noise", spy)
    root, truth = color_folder
    result = scan(root, out=None, **FAST)
    assert len(seen) == 1 and seen[0] is not None
    names = result.classes
    expected = [names.index(label) for label in result.samples.sort_values("sample_id")["given_label"]]
    assert np.array_equal(np.asarray(seen[0]), expected)


@pytest.mark.slow
def test_scan_reads_the_confident_joint_of_its_last_epochs(color_folder):
    """From scratch, with two windows of epochs run, scan() reads the confident joint of the last five
    from its own records (loss, margin, the classes the run predicts) and says in run.json whether the
    rate is that reading (noise/interval.py settle_by_trajectory)."""
    from labelaudit.noise.confident import trajectory_rate

    root, _ = color_folder
    result = scan(root, out=None, **{**FAST, "epochs": 12})
    samples = result.samples.sort_values("sample_id")  # the records' order
    index = {c: i for i, c in enumerate(result.classes)}
    reading = trajectory_rate(result.records.loss, result.records.margin, samples["given_label"].map(index).to_numpy(),
                              samples["predicted_label"].map(index).to_numpy(), len(index), random_state=result.run["seed"])
    info = result.run["noise_model"]["trajectory_reading"]
    assert info["epochs"] == [8, 12] and info["used"] == reading.settled
    assert info["rate"] == pytest.approx(reading.rate) and info["previous"] == pytest.approx(reading.previous)
    assert ("confident joint" in result.run["noise_model"]["interval"]["bootstrap_method"]) == reading.settled
    assert "trajectory_reading" not in scan(root, out=None, **FAST).run["noise_model"]  # 8 epochs: too few


@pytest.mark.slow
def test_proxy_runs_pool_each_seeds_bootstrap_and_leave_the_outputs_alone(color_folder):
    """--proxy-runs 2: the outputs are the --seed run's; run 2 is what --seed + 1 estimates; the interval
    is the percentile interval of both runs' bootstrap rounds pooled (recomputed here from the AUM)."""
    import numpy as np

    from labelaudit.noise.mixture import fit_noise, percentile_interval

    root, _ = color_folder
    first, second = scan(root, out=None, seed=3, **FAST), scan(root, out=None, seed=4, **FAST)
    both = scan(root, out=None, seed=3, proxy_runs=2, **FAST)
    pd.testing.assert_frame_equal(both.samples, first.samples)
    assert both.summary["noise_rate"] == first.summary["noise_rate"]
    rates = [first.summary["noise_rate"], second.summary["noise_rate"]]
    assert both.summary["noise_rate_runs"] == rates and rates[0] > 0.03  # the 6 flips are found in each run
    assert both.run["noise_model"]["interval"]["runs"]["seeds"] == [3, 4]
    index = {c: i for i, c in enumerate(first.classes)}
    draws = [fit_noise("margin", aul_scores=r.samples["aul"].to_numpy(), aum_scores=r.samples["aum"].to_numpy(),
                       random_state=seed, given=r.samples["given_label"].map(index).to_numpy(),
                       early=r.early_agreement()).draws
             for r, seed in ((first, 3), (second, 4))]
    pooled = list(percentile_interval(np.concatenate(draws)))
    assert both.run["noise_model"]["interval"]["bootstrap"] == pytest.approx(pooled)
    low, high = both.summary["noise_rate_interval"]  # the stated interval holds the pooled bootstrap's
    assert low <= pooled[0] and high >= pooled[1]
    assert first.summary["noise_rate_runs"] is None


@pytest.mark.slow
def test_proxy_runs_settle_each_run_by_its_last_epochs_as_its_seed_would(color_folder):
    """--proxy-runs 2 with 12 epochs: each run's rate is settled by the confident joint of its last
    epochs as scan --seed seed+r settles it, bootstrap included: the pooled interval is that of both
    seeds' trajectory draws."""
    import numpy as np

    from labelaudit.noise.confident import trajectory_rate
    from labelaudit.noise.mixture import percentile_interval

    root, _ = color_folder
    options = {**FAST, "epochs": 12}
    first, second = scan(root, out=None, seed=1, **options), scan(root, out=None, seed=2, **options)
    both = scan(root, out=None, seed=1, proxy_runs=2, **options)
    readings = [r.run["noise_model"]["trajectory_reading"]["rate"] for r in (first, second)]
    assert both.summary["noise_rate_runs"] == pytest.approx(readings)  # each run's rate, settled by its reading
    draws = []
    for r, seed in ((first, 1), (second, 2)):
        samples = r.samples.sort_values("sample_id")
        index = {c: i for i, c in enumerate(r.classes)}
        reading = trajectory_rate(r.records.loss, r.records.margin, samples["given_label"].map(index).to_numpy(),
                                  samples["predicted_label"].map(index).to_numpy(), len(index), random_state=seed)
        assert reading.settled and r.run["noise_model"]["trajectory_reading"]["used"]  # else this tests nothing
        draws.append(reading.draws)
    pooled = list(percentile_interval(np.concatenate(draws)))
    assert both.run["noise_model"]["interval"]["bootstrap"] == pytest.approx(pooled)


def test_proxy_runs_are_checked(color_folder, tmp_path):
    root, _ = color_folder
    with pytest.raises(UsageError, match="--proxy-runs 0"):
        scan(root, out=None, proxy_runs=0, **FAST)
    verified = tmp_path / "verified.csv"
    verified.write_text("path,label\nred/red_010.png,red\n")
    with pytest.raises(UsageError, match="--proxy-runs with --trusted"):
        scan(root, out=None, proxy_runs=2, trusted=str(verified), **FAST)


@pytest.mark.gpu
def test_cuda_scan_matches_the_cpu_scan_in_what_it_finds(color_folder):
    """On a GPU (bf16 autocast, channels_last) the scan finds what the CPU scan finds: the flipped
    colours rank on top and the flags mostly agree; bit equality is not expected across devices."""
    root, truth = color_folder
    flipped = {path for path, colour in truth.items() if not path.startswith(colour + "/")}
    cpu = scan(root, out=None, **FAST, device="cpu")
    cuda = scan(root, out=None, **FAST, device="cuda")
    assert cuda.run["device"].startswith("cuda")
    agree = (cpu.samples["is_label_issue"] == cuda.samples["is_label_issue"]).mean()
    assert agree >= 0.9
    top = set(cuda.samples.nsmallest(len(flipped), "rank")["path"])
    assert len(top & set(flipped)) >= 0.8 * len(flipped)
