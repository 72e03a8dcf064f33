"""The one training loop (training/loop.py): hooks in order, the precision policy, out-of-memory as a
typed error, and ``labelaudit train`` resuming after an interruption or a kill like a run that never
stopped."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from labelaudit.errors import DeviceMemoryError, TrainingError, UsageError
from labelaudit.robust import train
from labelaudit.training.checkpoint import CHECKPOINT_FILE
from labelaudit.training.loop import (Batches, Hook, Normalise, StepOutput, precision_for, seeded_generators,
                                      train_epochs)

from .conftest import kill_at_first_checkpoint, make_color_folder


def _batches(n=12, bs=4):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    gen, order = seeded_generators(0, torch.device("cpu"))
    return Batches(images, bs, "none", Normalise.of(images), gen, order)


def _linear():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))


class _Log(Hook):
    def __init__(self, name, seen):
        self.name, self.seen = name, seen

    def before_epoch(self, epoch):
        self.seen.append((self.name, "before", epoch))

    def after_step(self, epoch, ids, x, y, out):
        self.seen.append((self.name, "step", epoch, len(ids)))

    def end_epoch(self, epoch, mean_loss):
        self.seen.append((self.name, "end", epoch))
        return {self.name: epoch}


def test_hooks_run_in_order_and_every_sample_is_seen_once_an_epoch():
    model, batches, seen, ids_seen = _linear(), _batches(), [], []
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    labels = torch.arange(12) % 2

    def step(x, ids, raw):
        ids_seen.append(ids.clone())
        logits = model(x)
        return StepOutput(torch.nn.functional.cross_entropy(logits, labels[ids]), logits)

    infos = []
    run = train_epochs(model, opt, batches, step, epochs=2, labels=labels, hooks=[_Log("a", seen), _Log("b", seen)],
                       precision=precision_for(torch.device("cpu")), progress=lambda *a: infos.append(a[3]))
    assert run == {"start": 0, "epochs_run": 2, "stopped": None}
    assert seen[:4] == [("a", "before", 0), ("b", "before", 0), ("a", "step", 0, 4), ("b", "step", 0, 4)]
    assert seen.count(("a", "end", 0)) == 1 and seen.index(("a", "end", 0)) < seen.index(("b", "end", 0))
    for epoch in range(2):
        assert sorted(torch.cat(ids_seen[3 * epoch:3 * epoch + 3]).tolist()) == list(range(12))
    assert infos[-1]["a"] == infos[-1]["b"] == 1 and infos[-1]["epoch"] == 2 and "loss" in infos[-1]


def test_a_hook_can_stop_the_run_before_an_epoch():
    class Stop(Hook):
        def before_epoch(self, epoch):
            return {"stop": True, "why": "enough"} if epoch == 1 else None

    model = _linear()
    run = train_epochs(model, torch.optim.SGD(model.parameters(), lr=0.1), _batches(),
                       lambda x, ids, raw: StepOutput(model(x).sum()), epochs=5, hooks=[Stop()],
                       precision=precision_for(torch.device("cpu")))
    assert run["epochs_run"] == 1 and run["stopped"]["why"] == "enough"


def test_out_of_memory_becomes_a_typed_error_that_says_what_to_lower():
    def step(x, ids, raw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    model = _linear()
    with pytest.raises(DeviceMemoryError, match=r"ran out of memory in epoch 1 at batch size 4; lower --batch-size "
                                                r"\(now 4\) or --image-size \(now 8\)"):
        train_epochs(model, torch.optim.SGD(model.parameters(), lr=0.1), _batches(), step, epochs=1,
                     precision=precision_for(torch.device("cpu")))
    assert issubclass(DeviceMemoryError, TrainingError)


def test_a_diverging_loss_names_what_to_do():
    model = _linear()
    with pytest.raises(TrainingError, match="training loss became nan in epoch 1; lower --lr"):
        train_epochs(model, torch.optim.SGD(model.parameters(), lr=0.1), _batches(),
                     lambda x, ids, raw: StepOutput(model(x).sum() * float("nan")), epochs=1,
                     precision=precision_for(torch.device("cpu")), diverged="lower --lr")


def test_precision_policy():
    cpu = precision_for(torch.device("cpu"))
    assert cpu.name == "float32" and cpu.scaler is None and not cpu.autocast._enabled


@pytest.mark.parametrize("bf16", [True, False])
def test_precision_policy_per_gpu_dtype(monkeypatch, bf16):
    """On a CUDA device: bf16 autocast where the GPU supports it, with no scaler; fp16 otherwise, and
    then always with a GradScaler (the policy, decided without a GPU: torch's support check is faked)."""
    import warnings

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    with warnings.catch_warnings():  # without a GPU torch warns that it disables CUDA autocast and the scaler
        warnings.simplefilter("ignore")
        policy = precision_for(torch.device("cuda"))
    assert policy.autocast.fast_dtype == (torch.bfloat16 if bf16 else torch.float16)
    assert policy.name == ("bfloat16" if bf16 else "float16")
    assert (policy.scaler is None) == bf16


@pytest.mark.gpu
def test_precision_policy_on_cuda():
    cuda = precision_for(torch.device("cuda"))
    if torch.cuda.is_bf16_supported():
        assert cuda.name == "bfloat16" and cuda.scaler is None
    else:  # fp16 only with a GradScaler
        assert cuda.name == "float16" and cuda.scaler is not None


def test_the_decoded_array_is_the_cpu_training_tensor():
    """On the CPU the (N, 3, S, S) training tensor is the decoded (N, S, S, 3) array itself, in
    channels_last: the dataset is held once. A read-only (memory-mapped) array works the same."""
    import numpy as np

    from labelaudit.training.loop import device_images

    array = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    tensor = device_images(array, torch.device("cpu"))
    assert tensor.shape == (5, 3, 4, 4) and tensor.is_contiguous(memory_format=torch.channels_last)
    assert tensor.data_ptr() == array.__array_interface__["data"][0]  # no copy
    assert torch.equal(tensor[2, 1], torch.from_numpy(array[2, :, :, 1].copy()))
    array.setflags(write=False)
    assert torch.equal(device_images(array, torch.device("cpu")), tensor)


@pytest.mark.gpu
def test_a_dataset_larger_than_the_gpu_share_trains_from_host_memory_like_one_on_the_gpu():
    """A dataset that does not fit (``max_bytes``) stays in host memory and its batches go to the GPU as
    they are drawn: the same dynamics as with the dataset on the GPU."""
    import numpy as np

    from labelaudit.dynamics.proxy import ProxySettings, train_proxy
    from labelaudit.training.loop import device_images, device_labels

    cuda = torch.device("cuda")
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    labels = device_labels(rng.integers(0, 2, 64), cuda)
    settings = ProxySettings(model="tiny", epochs=2, stop_from=None, batch_size=16)
    host = device_images(array, cuda, max_bytes=1)
    assert host.device.type == "cpu"
    a = train_proxy(host, labels, 2, settings, device=cuda)
    b = train_proxy(device_images(array, cuda), labels, 2, settings, device=cuda)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)


class _StopAfterEpoch:
    def __init__(self, epoch):
        self.epoch = epoch

    def __call__(self, stage, done, total, info):
        if stage == "fit" and info.get("epoch") == self.epoch and "loss" in info:
            raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.parametrize("methods", [dict(weights=True), dict(sln=0.5, ema=0.9, label_correction=3)])
def test_interrupted_train_resumes_to_the_same_model(scanned, clean_eval, tmp_path, methods):
    tmp, _ = scanned
    options = dict(epochs=6, batch_size=16, workers=1, augment="crop", eval_data=clean_eval, **methods)
    if methods.get("weights"):
        options["audit"] = tmp / "audit"
    full = train(tmp / "images", out=tmp_path / "full", **options)
    with pytest.raises(KeyboardInterrupt):
        train(tmp / "images", out=tmp_path / "cut", progress=_StopAfterEpoch(4), **options)
    assert torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True)["epoch"] == 4
    assert not (tmp_path / "cut" / "metrics.json").exists()
    with pytest.raises(UsageError, match="other settings or other data; train with the same options"):
        train(tmp / "images", out=tmp_path / "cut", resume=True, **{**options, "lr": 0.05})
    resumed = train(tmp / "images", out=tmp_path / "cut", resume=True, **options)
    assert resumed.metrics["resumed_from_epoch"] == 4 and full.metrics["resumed_from_epoch"] == 0
    assert resumed.metrics["epochs"] == full.metrics["epochs"]  # losses, learning rates, accuracies
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "cut" / CHECKPOINT_FILE).exists()  # a finished run removes its checkpoint


@pytest.mark.slow
def test_killed_train_subprocess_resumes_like_an_uninterrupted_run(tmp_path):
    root = tmp_path / "images"
    make_color_folder(root, n_per_class=60)
    options = ["--epochs", "25", "--batch-size", "16", "--config", "image_size = 16", "--config", "workers = 1",
               "--config", "augment = 'none'", "--config", f"cache_dir = '{tmp_path / 'cache'}'", "-q"]
    command = [sys.executable, "-m", "labelaudit", "train", str(root), *options]
    done = kill_at_first_checkpoint(command, tmp_path / "cut", epochs=25)
    subprocess.run([*command, "--out", str(tmp_path / "cut"), "--resume"], check=True, timeout=600)
    subprocess.run([*command, "--out", str(tmp_path / "full")], check=True, timeout=600)
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert cut["resumed_from_epoch"] == done and cut["epochs"] == full["epochs"]
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
