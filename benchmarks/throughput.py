#!/usr/bin/env python3
"""Throughput of scan's stages, and scan next to a plain DataLoader pipeline, in one process.

    python benchmarks/throughput.py
    python benchmarks/throughput.py --photos 40 --models small tiny

Measured on the CIFAR-10N worst 10k subset (10,000 32×32 JPEGs) and on large photos this script
generates (3000×2000 JPEGs, smooth random colour fields, kept under benchmarks/work/photos):

- decode: images/s cold (empty cache: hash + decode in worker processes) and warm (cache hit), and for
  the photos, draft-mode JPEG decoding against a full decode + resize of the same files;
- training: images/s of the proxy's training loop per model (CPU here; `--device cuda` on a GPU),
  and what channels_last buys (the same loop with the network and batches in the default layout);
- scan end to end (cold cache, default settings): seconds per stage from run.json and the peak
  resident memory of the scan process;
- the baseline a user would write: a torch ``Dataset`` that opens each JPEG with PIL, resizes it and
  applies torchvision's RandomCrop + RandomHorizontalFlip, a ``DataLoader`` with 2 workers, the same
  network, optimiser and epochs, recording each sample's loss every epoch; scan's speed is reported
  as a ratio to it (images trained per second, decoding included on both sides).

These machines are shared and noisy: compare the ratios measured in one run, not absolute times
across runs. Writes benchmarks/results/throughput.json and .md.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from _cases import CASES, WORK, build, load_case, machine_meta, save_results

SIDE = 32


def _photos(n: int) -> list[str]:
    """``n`` 3000×2000 JPEGs (smooth colour fields with noise, ~1–2 MB each), made once."""
    from PIL import Image

    folder = WORK / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        path = folder / f"photo_{i:03d}.jpg"
        if not path.exists():
            small = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
            im = Image.fromarray(small).resize((3000, 2000), Image.BICUBIC)
            noise = rng.integers(-12, 12, (2000, 3000, 3))
            im = Image.fromarray(np.clip(np.asarray(im, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
            im.save(path, quality=90)
        files.append(str(path))
    return files


def decode_rates(folder: Path, photos: list[str], workers: int) -> dict:
    from labelaudit.data.dataset import load_dataset
    from labelaudit.data.decode import decode_files
    from labelaudit.data.sources import list_folder

    listing = list_folder(folder / "images")
    n = len(listing.samples)
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        load_dataset(listing, image_size=SIDE, workers=workers, cache_dir=Path(cache))
        cold = time.perf_counter() - t
        t = time.perf_counter()
        load_dataset(listing, image_size=SIDE, workers=workers, cache_dir=Path(cache))
        warm = time.perf_counter() - t
    out["cifar_jpeg"] = {"n": n, "cold_images_per_s": n / cold, "warm_images_per_s": n / warm, "workers": workers}
    t = time.perf_counter()
    _, errors = decode_files(photos, SIDE, workers=workers)
    draft = time.perf_counter() - t
    assert not any(errors)
    t = time.perf_counter()
    _full_decode(photos, workers)
    full = time.perf_counter() - t
    out["photos_3000x2000"] = {"n": len(photos), "draft_images_per_s": len(photos) / draft,
                               "full_decode_images_per_s": len(photos) / full, "draft_speedup": full / draft}
    return out


def _full_one(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((SIDE, SIDE), Image.BILINEAR))


def _full_decode(files: list[str], workers: int) -> None:
    """The same files decoded at full size, then resized (no draft mode), in the same number of processes."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_full_one, files, chunksize=4))


def train_rates(ds, models: list[str], epochs: int, device: torch.device) -> dict:
    """Training-loop images/s of each model on the decoded case ``ds`` (a Dataset)."""
    from labelaudit.training.loop import device_images, device_labels
    from labelaudit.dynamics.proxy import ProxySettings, train_proxy

    images, labels = device_images(ds.images, device), device_labels(ds.labels, device)
    n, k = len(labels), len(ds.classes)
    out = {}
    for model in models:
        settings = ProxySettings(model=model, epochs=epochs, stop_from=None)
        t = time.perf_counter()
        train_proxy(images, labels, k, settings, device=device)
        seconds = time.perf_counter() - t
        out[model] = {"images_per_s": n * epochs / seconds, "epochs": epochs, "device": str(device)}
    # what channels_last buys: the default model, its weights and batches in the default (NCHW) layout
    import labelaudit.dynamics.proxy as proxy
    from labelaudit.training.loop import Normalise
    from labelaudit.training.models import build_model

    def nchw_model(name, num_classes, dev):
        return build_model(name, num_classes).to(dev)

    def nchw_normalise(self, batch):
        return (batch.float() - self.mean) / self.std

    with mock.patch.object(proxy, "device_model", nchw_model), mock.patch.object(Normalise, "__call__", nchw_normalise):
        t = time.perf_counter()
        train_proxy(images, labels, k, ProxySettings(epochs=epochs, stop_from=None), device=device)
        seconds = time.perf_counter() - t
    out["small_without_channels_last"] = {"images_per_s": n * epochs / seconds, "epochs": epochs,
                                          "channels_last_speedup": out["small"]["images_per_s"] / (n * epochs / seconds)
                                          if "small" in out else None}
    return out


DATA_OPS = ("aten::index", "aten::where", "aten::reflection_pad2d", "aten::index_put_", "aten::index_add_",
            "aten::sub", "aten::div", "aten::_to_copy", "aten::randint", "aten::rand", "aten::flip", "aten::gather",
            "aten::scatter", "aten::amax", "aten::_softmax")


def loop_profile(ds, n: int = 3000) -> dict:
    """Where one epoch of the proxy's loop spends its time (torch.profiler, CPU self time): the
    convolutions' forward and backward, and the data path (indexing, augmentation, normalisation,
    recording)."""
    from torch.profiler import ProfilerActivity, profile

    from labelaudit.training.loop import device_images, device_labels
    from labelaudit.dynamics.proxy import ProxySettings, train_proxy

    cpu = torch.device("cpu")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_proxy(device_images(ds.images[:n], cpu), device_labels(ds.labels[:n], cpu), len(ds.classes),
                    ProxySettings(epochs=1), device=cpu)
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values())
    conv = sum(v for k, v in self_us.items() if "convolution" in k)
    data = sum(v for k, v in self_us.items() if k in DATA_OPS)
    return {"n": n, "convolution_share": conv / total, "data_path_share": data / total}


def scan_stages(folder: Path) -> dict:
    """A default scan, cold cache, in a child process: its run.json timings and peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "labelaudit", "scan", str(folder / "images"), "--out", f"{tmp}/audit",
                        "--cache-dir", f"{tmp}/cache", "--quiet"], check=True)
        wall = time.perf_counter() - t
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        run = json.loads(Path(f"{tmp}/audit/run.json").read_text())
    n = run["data"]["n_samples"]
    epochs = run["epochs_run"]
    return {"wall_s": wall, "timings": run["timings"], "n": n, "epochs": epochs,
            "peak_rss_mb": max(peak_kb, before) / 1024,
            "decode": {"n_decoded": run["data"]["n_decoded"], "n_cached": run["data"]["n_cached"]}}


def with_rates(res: dict) -> dict:
    """Images/s of scan two ways: over its stages (listing to report: the work scan does for the data,
    like the baseline's loop, which is timed inside an already-started Python with torch imported), and
    over the whole child process (adding interpreter start and imports, a fixed few seconds)."""
    sc = res["scan"]
    sc["stages_s"] = sum(sc["timings"].values())
    sc["images_per_s"] = sc["n"] * sc["epochs"] / sc["stages_s"]
    sc["images_per_s_process"] = sc["n"] * sc["epochs"] / sc["wall_s"]
    res["scan_vs_baseline"] = sc["images_per_s"] / res["baseline"]["images_per_s"]
    res["scan_process_vs_baseline"] = sc["images_per_s_process"] / res["baseline"]["images_per_s"]
    return res


class _PILDataset(torch.utils.data.Dataset):
    """What a user would write: open, convert, resize, augment, to tensor — per sample, per epoch."""

    def __init__(self, files: list[str], labels: np.ndarray):
        from torchvision import transforms

        self.files, self.labels = files, labels
        self.tf = transforms.Compose([transforms.Resize((SIDE, SIDE)), transforms.RandomCrop(SIDE, padding=2,
                                                                                              padding_mode="reflect"),
                                      transforms.RandomHorizontalFlip(), transforms.PILToTensor()])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.files[i]) as im:
            x = self.tf(im.convert("RGB"))
        return x, int(self.labels[i]), i


def dataloader_baseline(folder: Path, epochs: int, workers: int = 2) -> dict:
    from labelaudit.training.models import build_model
    from labelaudit.data.sources import list_folder

    listing = list_folder(folder / "images")
    classes = sorted(set(listing.samples["given_label"]))
    labels = listing.samples["given_label"].map({c: k for k, c in enumerate(classes)}).to_numpy()
    data = _PILDataset(listing.samples["file"].tolist(), labels)
    loader = torch.utils.data.DataLoader(data, batch_size=128, shuffle=True, num_workers=workers,
                                         persistent_workers=True, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_model("small", len(classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    losses = torch.zeros(epochs, len(data))
    t = time.perf_counter()
    for epoch in range(epochs):
        for x, y, idx in loader:
            x = (x.float() - 127.5) / 64.0
            loss_i = F.cross_entropy(model(x), y, reduction="none")
            opt.zero_grad()
            loss_i.mean().backward()
            opt.step()
            losses[epoch, idx] = loss_i.detach()
    wall = time.perf_counter() - t
    return {"wall_s": wall, "images_per_s": len(data) * epochs / wall, "epochs": epochs, "workers": workers,
            "losses_recorded": bool(torch.isfinite(losses).all())}


def markdown(res: dict) -> str:
    d, tr, sc, base = res["decode"], res["train"], res["scan"], res["baseline"]
    lines = ["**Decode** (images/s)", "", "| data | cold cache | warm cache | notes |", "|---|---|---|---|",
             f"| CIFAR-10N 10k JPEGs (32×32) | {d['cifar_jpeg']['cold_images_per_s']:,.0f} | "
             f"{d['cifar_jpeg']['warm_images_per_s']:,.0f} | {d['cifar_jpeg']['workers']} decode processes |",
             f"| {d['photos_3000x2000']['n']} photos 3000×2000 | {d['photos_3000x2000']['draft_images_per_s']:,.1f} "
             f"(draft mode) | – | full decode + resize: {d['photos_3000x2000']['full_decode_images_per_s']:,.1f}/s; "
             f"draft is {d['photos_3000x2000']['draft_speedup']:.1f}× faster |", "",
             "**Training loop** (images/s, CPU)", "", "| model | images/s |", "|---|---|"]
    for name, row in tr.items():
        extra = f" (channels_last buys {row['channels_last_speedup']:.2f}×)" if row.get("channels_last_speedup") else ""
        lines.append(f"| {name} | {row['images_per_s']:,.0f}{extra} |")
    t = sc["timings"]
    lines += ["", f"**Scan end to end** ({sc['n']:,} images, {sc['epochs']} epochs, cold cache): {sc['stages_s']:.0f} s "
              f"in its stages, {sc['wall_s']:.0f} s for the whole process, peak memory {sc['peak_rss_mb']:,.0f} MB; "
              "stages: "
              + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in t.items()), "",
              "**Against a DataLoader pipeline** (same network, optimiser and epochs; images trained per second, "
              "decoding included)", "", "| pipeline | wall s | images/s | ratio |", "|---|---|---|---|",
              f"| DataLoader + PIL, {base['workers']} workers | {base['wall_s']:.0f} | {base['images_per_s']:,.0f} | 1 |",
              f"| labelaudit scan (all stages: list, decode, train, score, report) | {sc['stages_s']:.0f} | "
              f"{sc['images_per_s']:,.0f} | {res['scan_vs_baseline']:.2f}× |",
              f"| labelaudit scan, whole process (with Python start and imports) | {sc['wall_s']:.0f} | "
              f"{sc['images_per_s_process']:,.0f} | {res['scan_process_vs_baseline']:.2f}× |", ""]
    if res.get("profile"):
        pr = res["profile"]
        lines += [f"**Where the loop's time goes** (torch.profiler, one epoch on {pr['n']:,} images, CPU self time): "
                  f"convolutions forward and backward {pr['convolution_share']:.0%}, data path (indexing, "
                  f"augmentation, normalisation, recording) {pr['data_path_share']:.0%}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--models", nargs="*", default=["small", "tiny", "medium"])
    ap.add_argument("--train-epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--markdown-only", action="store_true", help="re-render the table from the saved JSON")
    ap.add_argument("--profile-only", action="store_true", help="add the loop profile to the saved JSON")
    args = ap.parse_args()
    if args.markdown_only or args.profile_only:
        res = with_rates(json.loads((WORK.parent / "results" / "throughput.json").read_text()))
        if args.profile_only:
            res["profile"] = loop_profile(load_case(CASES["cifar10n_worst_10k"]).ds)
        save_results("throughput", res, markdown(res))
        return
    folder = build(CASES["cifar10n_worst_10k"])
    res = {"meta": machine_meta(), "decode": decode_rates(folder, _photos(args.photos), args.workers),
           "scan": scan_stages(folder)}
    ds = load_case(CASES["cifar10n_worst_10k"]).ds  # decoded once (warm cache) for the loop measurements
    res["train"] = train_rates(ds, args.models, args.train_epochs, torch.device(args.device))
    res["profile"] = loop_profile(ds)
    res["baseline"] = dataloader_baseline(folder, res["scan"]["epochs"], workers=2)
    res = with_rates(res)
    save_results("throughput", res, markdown(res))


if __name__ == "__main__":
    main()
