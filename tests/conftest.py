"""Shared fixtures: tiny image datasets that the tests build themselves with Pillow."""
from __future__ import annotations

from pathlib import Path

import os

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

# CI runs the fuzz tests on a fixed sequence of cases (a red build is always reproducible);
# locally every run draws new cases and keeps the failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

COLORS = {"red": (200, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 200)}


def color_image(rgb, rng: np.random.Generator, size: int = 20) -> Image.Image:
    """A noisy image whose mean colour is ``rgb``; a proxy learns the class from it in a few steps."""
    base = np.array(rgb, dtype=np.float64)[None, None, :]
    pixels = base + rng.normal(0, 35, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_color_folder(root: Path, n_per_class: int = 24, flips_per_class: int = 2, seed: int = 0) -> dict:
    """ImageFolder of 3 colour classes; ``flips_per_class`` images of each colour are filed under the
    next class. Returns {relative path: true colour}."""
    rng = np.random.default_rng(seed)
    names = list(COLORS)
    truth = {}
    for k, name in enumerate(names):
        for i in range(n_per_class):
            given = names[(k + 1) % len(names)] if i < flips_per_class else name
            rel = f"{given}/{name}_{i:03d}.png"
            (root / given).mkdir(parents=True, exist_ok=True)
            color_image(COLORS[name], rng).save(root / rel)
            truth[rel] = name
    return truth


@pytest.fixture
def color_folder(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "images"
    return root, make_color_folder(root)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own decoded-image cache, never the user's."""
    monkeypatch.setenv("LABELAUDIT_CACHE", str(tmp_path / "cache"))


FAST = dict(epochs=8, image_size=16, batch_size=16, workers=1, lr=0.05, augment="none")
FAST_ARGS = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]  # the same, as scan options


@pytest.fixture(scope="session")
def scanned(tmp_path_factory) -> tuple[Path, dict]:
    """One real scan of the colour folder (6 flipped labels), shared by the tests that only read an
    audit: returns (folder holding images/ and audit/, truth)."""
    from labelaudit import scan

    tmp = tmp_path_factory.mktemp("scanned")
    truth = make_color_folder(tmp / "images")
    scan(tmp / "images", out=tmp / "audit", cache_dir=str(tmp / "cache"), **FAST)
    return tmp, truth


@pytest.fixture
def reviewed(scanned, tmp_path):
    """(a copy of the shared audit, the images folder, truth): a review's answers rewrite an audit."""
    import shutil

    folder, truth = scanned
    shutil.copytree(folder / "audit", tmp_path / "audit")
    return tmp_path / "audit", folder / "images", truth


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a CUDA device: skipped (with the reason) where there is none."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def clean_eval(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "images"
    make_color_folder(root, n_per_class=10, flips_per_class=0, seed=7)
    return root


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc."""
    import os

    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def kill_at_first_checkpoint(command: list[str], out: Path, epochs: int) -> int:
    """Run ``command --out out`` in a subprocess and SIGKILL it with every process it started (no
    handler, no cleanup: like a power cut or the OOM killer; under torchrun the launcher and its
    ranks, which it starts in sessions of their own) as soon as its first per-epoch checkpoint exists. Checks that nothing but the checkpoint
    was left and returns the epochs it holds (at least 1, fewer than ``epochs``)."""
    import contextlib
    import os
    import signal
    import subprocess
    import time

    import torch

    from labelaudit.training.checkpoint import CHECKPOINT_FILE

    killed = subprocess.Popen([*command, "--out", str(out)])
    checkpoint = out / CHECKPOINT_FILE
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    for pid in [killed.pid, *_descendants(killed.pid)]:  # torchrun starts its ranks in sessions of their own
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert sorted(os.listdir(out)) == [CHECKPOINT_FILE]  # no partial output
    done = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= done < epochs
    return done
