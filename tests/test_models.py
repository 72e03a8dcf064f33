"""Proxy networks and training on CPU."""
import numpy as np
import pytest
import torch
from PIL import Image

from labelaudit import scan
from labelaudit.training.augment import augment_batch
from labelaudit.training.models import MODELS, build_model

from .conftest import FAST, make_color_folder


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_maps_images_to_logits(name):
    torch.manual_seed(0)
    net = build_model(name, num_classes=7)
    out = net(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 7)
    out.sum().backward()  # trainable end to end
    with pytest.raises(ValueError, match="name='nope': unknown model"):
        build_model("nope", 3)


def test_augment_shifts_and_flips_whole_batches():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment_batch(x, "none", g), x)
    y = augment_batch(x, "crop+flip", g, pad=1)
    assert y.shape == x.shape and y.dtype == torch.uint8
    # each output is the input translated by at most 1 px (reflect-padded) and maybe mirrored:
    # its centre 2×2 block comes from inside the original image
    for i in range(2):
        src = {int(v) for v in x[i].flatten()}
        assert {int(v) for v in y[i, :, 1:3, 1:3].flatten()} <= src


def test_a_class_with_one_sample_works(tmp_path):
    root = tmp_path / "images"
    make_color_folder(root, n_per_class=10, flips_per_class=0)
    (root / "lonely").mkdir()
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(root / "lonely" / "only.png")
    result = scan(root, out=tmp_path / "o", **FAST)
    assert result.classes == ["blue", "green", "lonely", "red"]
    row = result.noise[result.noise["label"] == "lonely"].iloc[0]
    lonely = result.samples.set_index("path").loc["lonely/only.png"]
    assert row["n_samples"] == 1 and row["noise_rate"] == pytest.approx(lonely["p_mislabeled"])
    assert row["n_mislabeled"] == pytest.approx(lonely["p_mislabeled"])
    assert len(result.samples) == 31
