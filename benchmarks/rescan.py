#!/usr/bin/env python3
"""Re-scan benchmark: loading 10,000 CIFAR-10N JPEGs with a cold cache, then again with a warm one.

    python benchmarks/rescan.py

A warm load must decode nothing (n_decoded = 0): it reads and hashes the files, then takes the
pixels from the cache. Writes benchmarks/results/rescan.json.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from labelaudit.data.dataset import load_dataset
from labelaudit.data.decode import default_workers
from labelaudit.data.sources import list_folder
from _cases import CASES, RESULTS, build, timed


def main() -> None:
    folder = build(CASES["cifar10n_worst_10k"]) / "images"
    cache = Path(tempfile.mkdtemp(prefix="labelaudit-rescan-"))
    workers = default_workers()
    rows = []
    try:
        for label in ("cold", "warm"):
            ds, wall = timed(load_dataset, list_folder(folder), image_size=32, workers=workers, cache_dir=cache)
            rows.append({"cache": label, "n": len(ds.samples), "seconds": wall,
                         "images_per_s": len(ds.samples) / wall, **ds.stats})
            print(f"{label}: {wall:.2f}s  ({len(ds.samples) / wall:,.0f} images/s)  decoded {ds.stats['n_decoded']}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert rows[1]["n_decoded"] == 0, "a warm re-scan decoded images"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rescan.json").write_text(json.dumps({"workers": workers, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
