#!/usr/bin/env python3
"""How the scan's cost grows with N: synthetic 16-px images, one epoch, every stage timed.

    python benchmarks/scale.py                          # N = 10k, 100k, 500k (about 40 minutes on 2 cores)
    python benchmarks/scale.py --sizes 10000 100000     # a quicker look
    python benchmarks/scale.py --ranks 1 2              # and a 2-process gloo run next to each 1-process run

The benchmark writes N tiny PNGs itself (10 colour classes with noise in the pixels, 10% of the
labels flipped to another class) into benchmarks/work/scale/<N>/ with a manifest, once. Each run is a
fresh process with an empty decode cache: ``labelaudit scan --manifest ... --epochs 1 --image-size 16``
(under torchrun for 2 ranks). Per stage, from run.json's ``timings``: list (reading the manifest and
checking the files), load (hashing and decoding), one epoch of training, scores and noise model,
report, and writing (the rest of the wall time: the Parquet tables and run.json); each as seconds per
1,000 samples, with the ratio to the smallest N's. Peak RSS is the scan process's own maximum resident
set (rank 0's under torchrun; the decoding workers are separate processes and hold one chunk each).
Writes benchmarks/results/<tag>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from _cases import WORK, machine_meta, save_results

COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], dtype=np.float64)
SIZES = (10_000, 100_000, 500_000)
SIDE = 16
FLIP = 0.10
PER_FOLDER = 1000
STAGES = ("list_s", "load_s", "train_s", "score_s", "report_s", "write_s")


def _write_chunk(job: tuple[Path, int, int, int]) -> None:
    from PIL import Image

    root, start, stop, seed = job
    rng = np.random.default_rng(seed + start)
    for i in range(start, stop):
        true = (i * 7919) % len(COLOURS)
        pixels = COLOURS[true][None, None, :] + rng.normal(0, 40, (SIDE, SIDE, 3))
        folder = root / f"{i // PER_FOLDER:05d}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(folder / f"{i:07d}.png")


def make_images(n: int, seed: int = 0) -> Path:
    """benchmarks/work/scale/<n>/ with images/ and manifest.csv (path, label, true_label); made once."""
    import pandas as pd

    folder = WORK / "scale" / str(n)
    manifest = folder / "manifest.csv"
    if manifest.exists():
        return folder
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    step = 5000
    with Pool(os.cpu_count() or 2) as pool:
        pool.map(_write_chunk, [(images, a, min(a + step, n), seed) for a in range(0, n, step)])
    rng = np.random.default_rng(seed)
    true = (np.arange(n) * 7919) % len(COLOURS)
    flip = rng.random(n) < FLIP
    given = np.where(flip, (true + rng.integers(1, len(COLOURS), n)) % len(COLOURS), true)
    paths = [f"images/{i // PER_FOLDER:05d}/{i:07d}.png" for i in range(n)]
    table = pd.DataFrame({"path": paths, "label": [f"c{k}" for k in given], "true_label": [f"c{k}" for k in true]})
    table.to_csv(folder / "manifest.tmp", index=False)
    os.replace(folder / "manifest.tmp", manifest)
    return folder


def child(n: int, out: Path, cache: Path) -> None:
    """One scan in this process (rank 0 prints the JSON row)."""
    from labelaudit import scan
    from labelaudit.training.distributed import current

    folder = WORK / "scale" / str(n)
    t0 = time.perf_counter()
    result = scan(manifest=folder / "manifest.csv", root=folder, out=out, epochs="1", image_size=SIDE,
                  cache_dir=str(cache), device="cpu", path_column="path", label_column="label")
    wall = time.perf_counter() - t0
    if current().main:
        t = dict(result.run["timings"])
        t["write_s"] = max(wall - sum(t.get(k, 0.0) for k in STAGES[:-1]), 0.0)
        print("ROW " + json.dumps({"n": n, "wall_s": wall, "timings": t,
                                   "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                                   "noise_rate": float(result.summary.noise_rate)}), flush=True)


def run(n: int, ranks: int) -> dict:
    import shutil

    out, cache = WORK / "scale" / f"{n}-r{ranks}.audit", WORK / "scale" / f"cache-{n}-r{ranks}"
    shutil.rmtree(cache, ignore_errors=True)  # every run decodes: the load stage is measured, not a cache hit
    launcher = ([sys.executable] if ranks == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)])
    done = subprocess.run([*launcher, str(Path(__file__).resolve()), "--child", str(n), "--out", str(out),
                           "--cache", str(cache)], capture_output=True, text=True, cwd=Path(__file__).parent)
    rows = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
    if done.returncode != 0 or not rows:
        raise SystemExit(f"scale.py: the {ranks}-process run at N={n} failed:\n{done.stderr[-3000:]}")
    shutil.rmtree(cache, ignore_errors=True)
    return {**json.loads(rows[0]), "ranks": ranks}


def markdown(rows: list[dict]) -> str:
    base = {r["ranks"]: r for r in sorted(rows, key=lambda r: r["n"])[::-1]}  # the smallest N per rank count
    lines = ["Seconds per 1,000 samples per stage (× the smallest N's), one epoch of 16-px images, "
             "an empty cache (benchmarks/scale.py).", "",
             "| N | processes | list | load (hash + decode) | 1 epoch | scores + noise | report | write | "
             "wall s | peak RSS GiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["ranks"], r["n"])):
        b = base[r["ranks"]]
        cells = []
        for k in STAGES:
            per = 1000 * r["timings"].get(k, 0.0) / r["n"]
            ref = 1000 * b["timings"].get(k, 0.0) / b["n"]
            cells.append(f"{per:.3f} ({per / ref:.2f}×)" if ref > 0 else f"{per:.3f}")
        lines.append(f"| {r['n']:,} | {r['ranks']} | " + " | ".join(cells) +
                     f" | {r['wall_s']:.0f} | {r['peak_rss_gib']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--ranks", type=int, nargs="+", default=[1], help="process counts (2: torchrun, gloo)")
    ap.add_argument("--tag", default="scale")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.out, args.cache)
        return
    rows = []
    for n in args.sizes:
        t = time.perf_counter()
        make_images(n)
        print(f"N={n}: images ready in {time.perf_counter() - t:.0f} s", flush=True)
        for ranks in args.ranks:
            rows.append(run(n, ranks))
            print(json.dumps(rows[-1]), flush=True)
    save_results(args.tag, {"meta": machine_meta(), "rows": rows}, markdown(rows))


if __name__ == "__main__":
    main()
