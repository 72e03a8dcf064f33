"""``labelaudit demo``: an audit of data with known label errors, no data of the user's own needed.

scikit-learn's bundled handwritten digits (1,797 images, 8×8 px, shipped with the package: nothing is
downloaded) are written as an ImageFolder with a share of the labels flipped to another digit, the
folder is scanned, and the audit is scored against the flips it was given.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UsageError
from .pipeline import ScanResult, scan
from .progress import Progress

DEMO_UPSCALE = 4  # 8 px digits → 32 px, the proxy's default input size


def make_demo_folder(root: str | Path, *, noise: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Write the digits as ``root/<given label>/<index>.png`` with ``noise`` of the labels flipped
    uniformly to another digit. Returns the truth: path (relative to root), given_label, true_label,
    is_flipped."""
    from PIL import Image
    from sklearn.datasets import load_digits

    if not 0.0 <= noise < 0.9:
        raise UsageError(f"--noise {noise}: expected a share of flipped labels from 0 to 0.9")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    true = digits.target.astype(int)
    given = true.copy()
    flipped = rng.choice(len(true), int(round(noise * len(true))), replace=False)
    given[flipped] = (true[flipped] + rng.integers(1, 10, len(flipped))) % 10  # any other digit
    pixels = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)  # (N, 8, 8), 0..16 → 0..255
    root = Path(root)
    rows = []
    for i, (img, g, t) in enumerate(zip(pixels, given, true)):
        rel = f"{g}/{i:04d}.png"
        (root / str(g)).mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(255 - img).resize((8 * DEMO_UPSCALE,) * 2, Image.BILINEAR)  # dark ink on white
        big.convert("RGB").save(root / rel)
        rows.append((rel, str(g), str(t), bool(g != t)))
    return pd.DataFrame(rows, columns=["path", "given_label", "true_label", "is_flipped"])


@dataclass
class DemoResult:
    """The demo's audit and how it did against the flips it was given."""

    result: ScanResult
    truth: pd.DataFrame
    true_rate: float  # share of labels flipped
    auroc: float | None  # of `score` against the flips (None without flips)
    found_in_top: int  # flipped samples among the len(flipped) most suspicious


def demo(out: str | Path = "labelaudit-demo", *, noise: float = 0.1, seed: int = 0,
         progress: Progress | None = None, **options) -> DemoResult:
    """Build the demo folder in ``out/images`` (truth in ``out/truth.csv``), scan it into ``out/audit``
    (``augment="crop"``: a mirrored digit is not a digit; ``options`` override scan settings), and
    score the audit against the truth."""
    from sklearn.metrics import roc_auc_score

    out = Path(out)
    if (out / "images").exists():
        raise UsageError(f"--out {out}: {out / 'images'} exists already; remove it or pick another --out")
    truth = make_demo_folder(out / "images", noise=noise, seed=seed)
    truth.to_csv(out / "truth.csv", index=False)
    result = scan(out / "images", out=out / "audit", progress=progress, **{"augment": "crop", "seed": seed, **options})
    flipped = truth.set_index("path").loc[result.samples["path"], "is_flipped"].to_numpy()
    n = int(flipped.sum())
    auroc = float(roc_auc_score(flipped, result.samples["score"])) if 0 < n < len(flipped) else None
    top = result.samples["rank"].to_numpy() <= n
    return DemoResult(result, truth, float(flipped.mean()), auroc, int((top & flipped).sum()))
