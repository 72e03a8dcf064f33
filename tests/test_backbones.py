"""Networks with weights (training/backbones.py), offline: torchvision models by name, a state dict
saved by the test, torchvision's own weights file placed in a temporary TORCH_HOME, and one line for
a file that does not fit, a file that is not there and weights that cannot be fetched."""
from __future__ import annotations

import json
import urllib.error

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from labelaudit import scan
from labelaudit.cli import app
from labelaudit.errors import UsageError
from labelaudit.training.backbones import build_network, head_of, resolve_weights
from labelaudit.training.embeddings import Standardise, with_frozen_head, without_head
from labelaudit.training.models import build_model

from .conftest import FAST

RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's own file name for ResNet18_Weights.IMAGENET1K_V1


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """A TORCH_HOME of the test's own, and no network: a download attempt fails as offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_a_state_dict_saved_by_the_test_is_what_the_network_starts_from(tmp_path):
    torch.manual_seed(1)
    saved = build_model("small", 3).state_dict()
    torch.save(saved, tmp_path / "small.pt")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in saved.items()}}, tmp_path / "ckpt.pt")
    for file in ("small.pt", "ckpt.pt"):  # a plain state dict, or a DDP checkpoint's under state_dict
        torch.manual_seed(2)
        net = build_network("small", 3, resolve_weights("small", str(tmp_path / file)))
        assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    torch.manual_seed(2)
    five = build_network("small", 5, resolve_weights("small", str(tmp_path / "small.pt")))  # 5 classes: a fresh head
    head = head_of(five)
    assert head == "head" and five.head.weight.shape == (5, 192)
    assert all(torch.equal(v, saved[k]) for k, v in five.state_dict().items() if not k.startswith(head))


def test_a_file_that_does_not_fit_or_is_not_there_is_one_line(tmp_path):
    torch.save(build_model("tiny", 3).state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(UsageError, match=r"does not fit --model small: shapes differ: stem\.0\.weight"):
        build_network("small", 3, resolve_weights("small", str(tmp_path / "tiny.pt")))
    with pytest.raises(UsageError, match="no such file"):
        resolve_weights("small", str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match="not a readable state dict"):
        resolve_weights("small", str(tmp_path / "junk.pt"))
    torch.save({"a": 1}, tmp_path / "numbers.pt")
    with pytest.raises(UsageError, match="no state dict of tensors"):
        resolve_weights("small", str(tmp_path / "numbers.pt"))


def test_torchvision_weights_come_from_torch_home_under_torchvision_s_own_name(offline):
    from torchvision.models import resnet18

    torch.manual_seed(3)
    imagenet = resnet18(weights=None).state_dict()  # stands in for the ImageNet file: same keys and shapes
    offline.mkdir(parents=True)
    torch.save(imagenet, offline / RESNET18_FILE)
    pre = resolve_weights("resnet18", "DEFAULT")  # no download: load_state_dict_from_url would fail
    assert pre.torchvision and pre.image_size == 224
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406)) and pre.std == pytest.approx((0.229, 0.224, 0.225))
    net = build_network("resnet18", 4, pre)
    assert net.conv1.kernel_size == (7, 7) and net.fc.out_features == 4  # torchvision's architecture, a 4-class head
    assert all(torch.equal(v, imagenet[k]) for k, v in net.state_dict().items() if not k.startswith("fc."))
    assert resolve_weights("resnet18", "IMAGENET1K_V1").source == pre.source


def test_weights_neither_cached_nor_downloadable_say_where_to_put_the_file(offline):
    with pytest.raises(UsageError) as err:
        resolve_weights("resnet18", "DEFAULT")
    message = str(err.value)
    assert "could not be downloaded" in message and str(offline / RESNET18_FILE) in message
    assert "\n" not in message
    with pytest.raises(UsageError, match="not a weights name of resnet18"):
        resolve_weights("resnet18", "IMAGENET9K")


@pytest.mark.slow
def test_scan_with_a_torchvision_model_and_its_weights(color_folder, offline, tmp_path):
    """--model resnet18 --weights DEFAULT from the cache: the weights' 224 px unless --image-size says
    otherwise, their normalisation, and run.json saying so."""
    from torchvision.models import resnet18

    offline.mkdir(parents=True)
    torch.save(resnet18(weights=None).state_dict(), offline / RESNET18_FILE)
    root, _ = color_folder
    options = {**FAST, "epochs": 1, "batch_size": 36}
    small = scan(root, out=tmp_path / "a", model="resnet18", weights="DEFAULT", **options)  # FAST: 16 px
    assert small.run["config"]["image_size"] == 16 and small.run["config"]["weights"] == "DEFAULT"
    native = scan(root, out=None, model="resnet18", weights="DEFAULT", **{**options, "image_size": None})
    assert native.run["config"]["image_size"] == 224
    assert len(native.samples) == len(small.samples) and native.samples["score"].notna().all()


def test_any_torchvision_classification_model_by_name(color_folder):
    root, _ = color_folder
    result = scan(root, out=None, model="mobilenet_v3_small", **{**FAST, "epochs": 2, "image_size": 32})
    assert result.run["config"]["model"] == "mobilenet_v3_small" and result.samples["score"].notna().all()
    with pytest.raises(UsageError, match="--model 'resnet19': unknown model"):
        scan(root, out=None, model="resnet19")


def test_the_cli_names_a_missing_weights_file_in_one_line(color_folder, tmp_path):
    root, _ = color_folder
    out = CliRunner().invoke(app, ["scan", str(root), "--out", str(tmp_path / "a"), "--weights",
                                   str(tmp_path / "nope.pt")])
    assert out.exit_code == 2
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert lines == [f"labelaudit: error: --weights {tmp_path / 'nope.pt'}: no such file"]
    assert not (tmp_path / "a").exists()


def test_the_neighbourhood_score_ranks_swapped_labels_first():
    """Two clusters of 20 in embedding space, three labels swapped to the other cluster's: their
    neighbours disagree with them (score 1), everyone else's mostly agree."""
    import numpy as np

    from labelaudit.scores import knn_disagreement, knn_neighbours

    rng = np.random.default_rng(0)
    x = np.r_[rng.normal([5, 0, 0], 0.5, (20, 3)), rng.normal([0, 5, 0], 0.5, (20, 3))]
    labels = np.repeat([0, 1], 20)
    swapped = [3, 11, 27]
    labels[swapped] = 1 - labels[swapped]
    score = knn_disagreement(x, labels, k=5, chunk=7)  # chunks smaller than N: the same answer
    assert set(np.argsort(-score)[:3]) == set(swapped) and (score[swapped] == 1.0).all()
    assert np.delete(score, swapped).max() <= 0.4
    assert [knn_neighbours(n) for n in (40, 1797, 2500, 10_000, 10**6)] == [10, 42, 50, 100, 100]  # √N in [10, 100]
    by_default = knn_disagreement(x, labels)  # 40 samples: k = 10, so a swapped sample's 9 cluster mates and one more
    assert set(np.argsort(-by_default)[:3]) == set(swapped) and by_default[swapped].min() >= 0.9


def test_freeze_trains_a_head_on_cached_embeddings_and_a_rescan_computes_none(color_folder, tmp_path, monkeypatch):
    import labelaudit.training.embeddings as embeddings

    torch.manual_seed(1)
    torch.save(build_model("small", 3).state_dict(), tmp_path / "small.pt")
    root, truth = color_folder
    options = {**FAST, "model": "small", "weights": str(tmp_path / "small.pt"), "freeze": True,
               "cache_dir": str(tmp_path / "cache")}
    first = scan(root, out=tmp_path / "a", **options)
    info = first.run["backbone"]
    assert info["frozen"] and info["embeddings"] == "computed" and info["embedding_dim"] == 192
    assert first.run["config"]["freeze"] and "knn" in first.samples.columns
    assert first.run["scores"]["ran"] == ["aum", "knn"]  # with --freeze the neighbourhood score is fused by default
    flipped = {p for p, c in truth.items() if not p.startswith(c)}
    ranked = first.samples.sort_values("rank")
    assert set(ranked["path"][:len(flipped)]) == flipped
    assert set(ranked.loc[ranked["is_label_issue"], "path"]) <= flipped
    # the rate is the confident joint's of the head (noise/confident.py): the mean of its readings on the
    # head's own probabilities (72 samples, 192 dimensions: the head fits every label, 0) and on held-out
    # ones (6 of 72 = 0.083 wrong), and every p(mislabeled) follows it
    confident = first.run["noise_model"]["confident_joint"]
    assert confident["own"] == 0.0 and confident["held_out"] == pytest.approx(len(flipped) / len(truth), abs=0.03)
    assert confident["rate"] == pytest.approx((confident["own"] + confident["held_out"]) / 2)
    assert first.summary.noise_rate == pytest.approx(confident["rate"], abs=1e-6)
    assert first.samples["p_mislabeled"].mean() == pytest.approx(confident["rate"], abs=1e-6)
    low, high = first.summary.noise_rate_interval
    assert low <= confident["own"] and confident["held_out"] <= confident["interval"][1] <= high
    assert "confident joint" in first.run["noise_model"]["interval"]["bootstrap_method"]
    assert first.run["timings"]["rate_heads_s"] > 0

    def no_embedding(*args, **kwargs):
        raise AssertionError("a re-scan with the same backbone computed embeddings")

    monkeypatch.setattr(embeddings, "embed", no_embedding)
    again = scan(root, out=tmp_path / "b", **options)
    assert again.run["backbone"]["embeddings"] == "cached"
    pd.testing.assert_frame_equal(first.samples, again.samples)


@pytest.mark.slow
def test_fine_tuning_fuses_the_neighbourhood_score_of_the_weights_before_training(color_folder, tmp_path):
    """With --weights and no --freeze the whole network trains, and the neighbourhood score reads the
    backbone's embeddings as its weights left them: the very column a frozen scan writes. ``--scores aum``
    computes no embedding."""
    torch.manual_seed(1)
    torch.save(build_model("small", 3).state_dict(), tmp_path / "small.pt")
    root, _ = color_folder
    options = {**FAST, "model": "small", "weights": str(tmp_path / "small.pt"), "cache_dir": str(tmp_path / "cache")}
    tuned = scan(root, out=None, **options)
    frozen = scan(root, out=None, **options, freeze=True)
    assert tuned.run["scores"]["ran"] == ["aum", "knn"]
    info = tuned.run["backbone"]
    assert not info["frozen"] and info["embedding_dim"] == 192 and info["embeddings"] == "computed"
    assert frozen.run["backbone"]["embeddings"] == "cached"  # the same backbone, the same embeddings
    assert frozen.run["backbone"]["embeddings_key"] == info["embeddings_key"]
    pd.testing.assert_series_equal(tuned.samples["knn"], frozen.samples["knn"])
    assert not tuned.samples["aum"].equals(frozen.samples["aum"])  # the network trained, not a head
    # the rate comes from a linear head on the same embeddings: the very readings the frozen scan makes
    readings = {k: tuned.run["noise_model"]["confident_joint"][k] for k in ("own", "held_out", "rate")}
    assert readings == {k: frozen.run["noise_model"]["confident_joint"][k] for k in readings}
    mixtures = (tuned.run["noise_model"]["confident_joint"]["rate_before"],
                frozen.run["noise_model"]["confident_joint"]["rate_before"])
    assert mixtures[0] != mixtures[1]  # what it replaced: each scan's own mixture
    alone = scan(root, out=None, **options, scores="aum")
    assert "knn" not in alone.samples.columns and "embedding_dim" not in alone.run["backbone"]
    assert "confident_joint" not in alone.run["noise_model"]  # no embeddings, no head: the mixture's rate
    pd.testing.assert_series_equal(alone.samples["aum"], tuned.samples["aum"])  # the fusion leaves training alone


def test_freeze_settings_that_cannot_work_are_one_line(color_folder):
    root, _ = color_folder
    with pytest.raises(UsageError, match="--freeze: a frozen network needs its weights"):
        scan(root, out=None, freeze=True)
    with pytest.raises(UsageError, match="--scores knn: the neighbourhood score reads a pretrained backbone's "
                                         "embeddings; add --weights"):
        scan(root, out=None, scores="aum,knn")
    with pytest.raises(UsageError, match="--scores limit with --freeze"):
        scan(root, out=None, freeze=True, weights="x.pt", scores="aum,limit")


def test_a_head_trained_on_standardised_embeddings_folds_into_the_network():
    """with_frozen_head: the saved network alone gives the head's logits on the standardised embedding,
    also where the network's own head has no bias (small's)."""
    torch.manual_seed(0)
    net = build_model("small", 4).eval()
    x = torch.rand(6, 3, 16, 16) * 255
    feats = without_head(net)(x)
    standardise = Standardise(feats * 3.0 + 1.0)  # statistics of another set than the one checked
    head = torch.nn.Linear(feats.shape[1], 4)
    folded = with_frozen_head(net, head, standardise).eval()
    with torch.no_grad():
        assert torch.allclose(folded(x), head(standardise(feats)), atol=1e-4)
    assert folded.head.bias is not None and net.head.bias is None  # the original is untouched


@pytest.mark.slow
def test_train_freeze_and_fine_tune_from_weights_then_predict(color_folder, offline, tmp_path):
    """train --pretrained FILE --freeze: a head on cached embeddings, saved as one network that predict
    loads and that scores the held-out set as the run's own evaluation did; train --model resnet18
    --pretrained DEFAULT (from TORCH_HOME): torchvision's architecture, which predict rebuilds."""
    from torchvision.models import resnet18

    from labelaudit.robust import train
    from labelaudit.robust.predict import load_model, predict

    from .conftest import make_color_folder

    root, _ = color_folder
    held_out = tmp_path / "held_out"
    make_color_folder(held_out, n_per_class=8, flips_per_class=0, seed=7)
    torch.manual_seed(1)
    torch.save(build_model("small", 3).state_dict(), tmp_path / "small.pt")
    fast = dict(epochs=12, batch_size=16, workers=1, lr=0.05, image_size=16, cache_dir=str(tmp_path / "cache"))
    frozen = train(root, out=tmp_path / "frozen", eval_data=held_out, model="small", pretrained=str(tmp_path / "small.pt"),
                   freeze=True, **fast)
    b = frozen.metrics["backbone"]
    assert b["frozen"] and b["embedding_dim"] == 192 and b["embeddings"] == "computed"
    assert frozen.metrics["config"]["augment"] == "none"
    info = json.loads((tmp_path / "frozen" / "model.json").read_text())
    assert info["frozen"] and info["architecture"] == "labelaudit" and info["pretrained"] == b["weights"]
    preds = predict(tmp_path / "frozen", held_out, workers=1)
    accuracy = float((preds["predicted_label"] == preds["given_label"]).mean())
    assert accuracy == pytest.approx(frozen.final_accuracy) and accuracy >= 0.9
    again = train(root, out=None, eval_data=held_out, model="small", pretrained=str(tmp_path / "small.pt"), freeze=True,
                  **fast)
    assert again.metrics["backbone"]["embeddings"] == "cached" and again.metrics["epochs"] == frozen.metrics["epochs"]

    offline.mkdir(parents=True)
    torch.save(resnet18(weights=None).state_dict(), offline / RESNET18_FILE)
    tuned = train(root, out=tmp_path / "tuned", model="resnet18", pretrained="DEFAULT", **{**fast, "epochs": 1})
    assert tuned.metrics["backbone"]["frozen"] is False
    net, info = load_model(tmp_path / "tuned")
    assert info["architecture"] == "torchvision" and net.conv1.weight.shape == (64, 3, 7, 7)
    assert info["mean"] == pytest.approx([255 * v for v in (0.485, 0.456, 0.406)])


def test_train_backbone_settings_that_cannot_work_are_one_line(color_folder, tmp_path):
    from labelaudit.robust import TrainConfig

    root, _ = color_folder
    with pytest.raises(UsageError, match="--freeze: a frozen network needs its weights; add --pretrained"):
        TrainConfig(freeze=True).validate()
    with pytest.raises(UsageError, match="--freeze with --meta-reweight"):
        TrainConfig(freeze=True, pretrained="x.pt", meta_reweight=True).validate()
    with pytest.raises(UsageError, match="--model 'resnet999': unknown"):
        TrainConfig(model="resnet999").validate()
    out = CliRunner().invoke(app, ["train", str(root), "--out", str(tmp_path / "m"), "--pretrained",
                                   str(tmp_path / "nope.pt")])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert out.output.strip().splitlines() == [f"labelaudit: error: --pretrained {tmp_path / 'nope.pt'}: no such file"]


def test_fine_tuning_trains_at_a_tenth_of_the_from_scratch_rate():
    from labelaudit.config import ScanConfig

    assert ScanConfig().learning_rate == 0.05
    assert ScanConfig(weights="w.pt").learning_rate == pytest.approx(0.005)  # the whole network fine-tunes
    assert ScanConfig(weights="w.pt", freeze=True).learning_rate == 0.05  # a fresh head on frozen embeddings
    assert ScanConfig(weights="w.pt", lr=0.02).learning_rate == 0.02  # an explicit --lr wins
    with pytest.raises(UsageError, match="--lr"):
        ScanConfig(lr=-1.0).validate()
