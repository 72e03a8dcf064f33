"""Benchmark cases built with ../shared/bench/make_noisy.py, and scoring with ../shared/bench/evaluate.py.

Cases are built once under benchmarks/work/ (git-ignored) and reused.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
WORK = HERE / "work"
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Case:
    name: str
    make_args: tuple[str, ...]  # arguments to make_noisy.py after OUT
    scan_options: dict = field(default_factory=dict)  # what a user of this kind of data would pass
    held_out: bool = False  # real-noise sets: measured, never tuned on
    source: object = None  # a function writing a derived source that make_args read, run when it is missing


DIGITS = ("--source", "digits", "--upscale", "4")
CIFAR_DATA = SHARED / "data" / "cifar10n"  # CIFAR-10 with the CIFAR-10N human labels
CIFAR_SOURCE = ("--source", str(CIFAR_DATA))
CIFAR = CIFAR_SOURCE + ("--limit", "10000")
# Digits are not mirror-symmetric: the documented setting for them is --augment crop.
CASES = {c.name: c for c in [
    Case("digits_uniform_0.4", DIGITS + ("--noise", "uniform:0.4"), {"augment": "crop"}),
    Case("digits_pair_0.2", DIGITS + ("--noise", "pair:0.2"), {"augment": "crop"}),
    Case("digits_asym_0.3", DIGITS + ("--noise", "asym:0.3"), {"augment": "crop"}),
    Case("digits_none", DIGITS + ("--noise", "none"), {"augment": "crop"}),
    Case("cifar10n_worst_10k", CIFAR + ("--noise", "column:worse_label"), {}, held_out=True),
]}

# Development sets for choosing defaults (never the held-out worse_label set).
DEV_CASES = {c.name: c for c in [
    *(CASES[n] for n in ("digits_none", "digits_uniform_0.4", "digits_pair_0.2", "digits_asym_0.3")),
    Case("cifar10n_clean_10k", CIFAR + ("--noise", "none"), {}),
    Case("cifar10n_random1_10k", CIFAR + ("--noise", "column:random_label1"), {}),
]}


def save_results(tag: str, payload, md: str) -> None:
    """benchmarks/results/<tag>.json (the payload) and <tag>.md (the table), and the table on stdout."""
    import json

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{tag}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{tag}.md").write_text(md)
    print(md)


@dataclass(frozen=True)
class Chosen:
    names: list  # case names, the held-out ones last
    tag: str
    merge: bool  # keep the saved rows of the cases not run again
    options: dict = field(default_factory=dict)  # the benchmark's own options, by dest


def chosen_cases(doc: str, cases: dict, tag: str, extra: dict | None = None, options: dict | None = None) -> Chosen:
    """The command line shared by the benchmarks that run a table of cases: ``--cases`` (default: all
    of ``cases``; the ``extra`` ones run only when named), ``--no-held-out`` (skip the held-out
    real-noise set), ``--tag`` and ``--merge``, and the benchmark's own ``options`` ({flag: argparse
    keywords}). The held-out cases come last, so a rule is fixed on the development cases before a
    held-out one is seen."""
    import argparse

    every = {**cases, **(extra or {})}
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(cases), choices=list(every))
    ap.add_argument("--no-held-out", action="store_true", help="skip the held-out CIFAR-10N worse_label case")
    ap.add_argument("--tag", default=tag)
    ap.add_argument("--merge", action="store_true",
                    help="replace only the named cases' rows in the saved results; keep the others")
    own = [ap.add_argument(flag, **kw).dest for flag, kw in (options or {}).items()]
    args = ap.parse_args()
    names = [n for n in args.cases if not (args.no_held_out and every[n].held_out)]
    return Chosen(sorted(names, key=lambda n: every[n].held_out), args.tag, args.merge,
                  {dest: getattr(args, dest) for dest in own})


def case_label(row: dict) -> str:
    """A result row's case name for a table, marked when it is the held-out set."""
    return row["case"] + (" (held out)" if row["held_out"] else "")


def run_and_save(chosen: Chosen, run_case, markdown) -> list[dict]:
    """Run ``run_case(name)`` for each chosen case, printing each row's table line as it comes, then
    save_results(tag, {"meta", "rows"}); with ``merge``, the fresh rows replace the saved rows of
    the same cases and the other saved rows stay (``meta`` is then the latest run's)."""
    rows = []
    for name in chosen.names:
        rows.append(run_case(name))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    if chosen.merge:
        rows = merge_saved(chosen.tag, rows, key=lambda r: r["case"])
    save_results(chosen.tag, {"meta": machine_meta(), "rows": rows}, markdown(rows))
    return rows


def merge_saved(tag: str, fresh: list[dict], key, field: str = "rows") -> list[dict]:
    """A benchmark's --merge: the rows under ``field`` of the saved results/<tag>.json with ``fresh``
    merged in by ``replace_rows``; just ``fresh`` when nothing is saved yet. Held-out rows stay last,
    so a development case added later goes before them."""
    import json

    saved = RESULTS / f"{tag}.json"
    rows = replace_rows(json.loads(saved.read_text())[field], fresh, key) if saved.exists() else fresh
    return sorted(rows, key=lambda r: bool(r.get("held_out")))


def replace_rows(saved: list[dict], fresh: list[dict], key) -> list[dict]:
    """``saved`` with each row whose ``key(row)`` a fresh row shares replaced by that fresh row, in
    place; fresh rows with a new key at the end (a benchmark's --merge: re-run some rows, keep the rest)."""
    by_key = {key(r): r for r in fresh}
    out = [by_key.pop(key(r), r) for r in saved]
    return out + [r for r in fresh if key(r) in by_key]


def machine_meta() -> dict:
    """What a result was measured with: versions, cores, torch threads, machine, date."""
    import os
    import platform
    import time

    import torch

    from labelaudit import __version__

    return {"labelaudit": __version__, "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}


def read_truth(folder: Path):
    """A case's truth.csv indexed by path: clean_label, noisy_label (strings), is_noisy (bool)."""
    import pandas as pd

    truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False).set_index("path")
    return truth.assign(is_noisy=truth["is_noisy"].str.lower().isin(["1", "true"]))


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), wall seconds)."""
    import time

    t = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t


def cached_arrays(path: Path, make, refresh: bool = False) -> dict:
    """``make()`` (a dict of arrays and numbers) saved to the .npz ``path`` and loaded from it on the
    next call, unless ``refresh``: per-sample results a benchmark replays without training again."""
    import numpy as np

    if path.exists() and not refresh:
        with np.load(path) as saved:
            return {k: saved[k] for k in saved.files}
    arrays = make()
    np.savez_compressed(path, **arrays)
    return arrays


def build(case: Case) -> Path:
    out = WORK / case.name
    if not (out / "truth.csv").exists():
        if case.source is not None:
            case.source()
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_noisy.py"), str(out), *case.make_args],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def evaluate(audit: Path, truth: Path) -> dict:
    spec = importlib.util.spec_from_file_location("_la_evaluate", SHARED / "bench" / "evaluate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.evaluate(audit, truth)


DIGITS_JUNK_NPZ = WORK / "sources" / "digits_junk.npz"


def _save_digits_with_junk(path: Path, make_junk) -> None:
    """scikit-learn's 1,797 digits plus 270 (13% of the 2,067) junk images ``make_junk(images, target,
    rng, n)`` (n = 15% of 1,797), each given a random digit label; clean label -1: no label is right."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(d.images * 16.0, 0, 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    junk = make_junk(images, d.target, rng, int(round(0.15 * len(images))))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=np.concatenate([images, junk]),
                        labels=np.concatenate([d.target, np.full(len(junk), -1)]).astype(np.int64),
                        given=np.concatenate([d.target, rng.integers(0, 10, len(junk))]).astype(np.int64),
                        class_names=np.array([str(c) for c in range(10)]))


def digits_junk_source() -> None:
    """The digits plus images of no class: digits with their 64 pixels shuffled (a development stand-in
    for the junk in a real set, such as the Roman-numeral set's, a held-out case)."""
    import numpy as np

    def shuffled(images, target, rng, n):
        picked = rng.choice(len(images), n, replace=False)
        return np.stack([rng.permutation(images[i].ravel()).reshape(images.shape[1:]) for i in picked])

    _save_digits_with_junk(DIGITS_JUNK_NPZ, shuffled)


DIGITS_CHIMERA_NPZ = WORK / "sources" / "digits_chimera.npz"


def digits_chimera_source() -> None:
    """The digits plus chimeras: the top half of one digit over the bottom half of a digit of another
    class. Junk made of real strokes, a closer stand-in than shuffled pixels for the scribbles of the
    Roman-numeral set (held out), which the proxy partly learns."""
    import numpy as np

    def chimeras(images, target, rng, n):
        top = rng.choice(len(images), n, replace=False)
        bottom = np.array([rng.choice(np.flatnonzero(target != target[i])) for i in top])
        return np.concatenate([images[top, :4], images[bottom, 4:]], axis=1)

    _save_digits_with_junk(DIGITS_CHIMERA_NPZ, chimeras)


def digits_degraded_npz(noise_sd: float) -> Path:
    return WORK / "sources" / f"digits_degraded_{noise_sd:g}.npz"


def digits_degraded_source(noise_sd: float) -> None:
    """scikit-learn's 1,797 digits with 15% of them (270) degraded by Gaussian pixel noise of standard
    deviation ``noise_sd`` (pixels 0–16) and every label right: a group of hard but correctly labelled
    images spread over all classes, the case the no-class rule of the noise model can mistake for junk
    (labelaudit/mixture.py). Its true noise rate is 0."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.copy()
    rng = np.random.default_rng(0)
    picked = rng.choice(len(images), int(round(0.15 * len(images))), replace=False)
    images[picked] += rng.normal(0.0, noise_sd, images[picked].shape)
    path = digits_degraded_npz(noise_sd)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=np.clip(images * 16.0, 0, 255).astype(np.uint8),
                        labels=d.target.astype(np.int64), given=d.target.astype(np.int64),
                        class_names=np.array([str(c) for c in range(10)]))


def _digits_degraded_case(noise_sd: float) -> Case:
    return Case(f"digits_degraded_sd{noise_sd:g}",
                ("--source", str(digits_degraded_npz(noise_sd)), "--noise", "column:given", "--upscale", "4"),
                {"augment": "crop"}, source=lambda: digits_degraded_source(noise_sd))


# benchmarks/noise_rate.py: the range real datasets live in, 0% to 60% (issue: noise-rate estimates).
NOISE_RATE_CASES = {c.name: c for c in [
    *(Case(f"digits_{kind}_{rate}", DIGITS + ("--noise", f"{kind}:{rate}"), {"augment": "crop"})
      for kind, rate in (("uniform", 0.05), ("uniform", 0.1), ("uniform", 0.2), ("uniform", 0.4), ("uniform", 0.6),
                         ("pair", 0.1), ("pair", 0.3), ("asym", 0.2))),
    CASES["digits_none"],
    DEV_CASES["cifar10n_clean_10k"],
    Case("cifar10n_uniform_0.05_10k", CIFAR + ("--noise", "uniform:0.05")),
    Case("cifar10n_uniform_0.1_10k", CIFAR + ("--noise", "uniform:0.1")),
    Case("cifar10n_uniform_0.4_10k", CIFAR + ("--noise", "uniform:0.4")),
    DEV_CASES["cifar10n_random1_10k"],
    Case("cifar10n_random2_10k", CIFAR + ("--noise", "column:random_label2")),
    Case("cifar10n_random3_10k", CIFAR + ("--noise", "column:random_label3")),
    # small sets whose errors the proxy memorises before they form a component: both estimate 0 (docs/benchmarks.md)
    Case("digits_junk_0.13", ("--source", str(DIGITS_JUNK_NPZ), "--noise", "column:given", "--upscale", "4"),
         {"augment": "crop"}, source=digits_junk_source),
    Case("cifar10n_random1_3k", CIFAR_SOURCE + ("--limit", "3000", "--noise", "column:random_label1")),
    # clean labels, 15% of the images degraded: readable (sd 8, of pixels 0–16) and nearly unreadable (sd 16)
    _digits_degraded_case(8), _digits_degraded_case(16),
    # junk made of real strokes (two half digits), closer to the Roman-numeral set's scribbles
    Case("digits_chimera_0.13", ("--source", str(DIGITS_CHIMERA_NPZ), "--noise", "column:given", "--upscale", "4"),
         {"augment": "crop"}, source=digits_chimera_source),
    CASES["cifar10n_worst_10k"],
]}

# Run only when named (--cases): the CIFAR cases at 5× the images (the 50k worse_label one held out), for how
# the estimate moves with the size of the dataset (each scan takes about 15 minutes on 2 cores).
CIFAR_50K = CIFAR_SOURCE + ("--limit", "50000")
LARGE_CASES = {c.name: c for c in [
    Case("cifar10n_uniform_0.05_50k", CIFAR_50K + ("--noise", "uniform:0.05")),
    Case("cifar10n_uniform_0.1_50k", CIFAR_50K + ("--noise", "uniform:0.1")),
    Case("cifar10n_random1_50k", CIFAR_50K + ("--noise", "column:random_label1")),
    # high and class-dependent noise: development cases where the stopping rule may fire at 50k, as on worse_label
    Case("cifar10n_uniform_0.4_50k", CIFAR_50K + ("--noise", "uniform:0.4")),
    Case("cifar10n_pair_0.3_50k", CIFAR_50K + ("--noise", "pair:0.3")),  # class-dependent: each class to the next
    Case("cifar10n_worst_50k", CIFAR_50K + ("--noise", "column:worse_label"), {}, held_out=True),
]}


# Real label errors found by people, measured only (held out): benchmarks/noise_rate.py runs them when named.
# MNIST's and CIFAR-10's test sets come with the errors cleanlab/label-errors validated on MTurk; they become
# .npz sources for make_noisy.py (given label as a column, the validated guess as the clean label).
MNIST_TEST_NPZ = WORK / "sources" / "mnist_test_validated.npz"
CIFAR_TEST_NPZ = WORK / "sources" / "cifar10_test_validated.npz"


def _validated_npz(path: Path, images, given, is_error, guessed, names: list[str]) -> None:
    """A make_noisy.py .npz source: ``labels`` the clean class (the given one, or ``guessed`` where a
    person validated ``is_error``), ``given`` the label as distributed."""
    import numpy as np

    clean = np.where(is_error, guessed, given).astype(np.int64)
    if (clean < 0).any():
        raise ValueError(f"{path.name}: a validated error without a guessed label")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images, labels=clean, given=np.asarray(given, dtype=np.int64),
                        class_names=np.array(names))


def mnist_test_source() -> None:
    """../shared/data/mnist/mnist_test.npz: 10,000 digits, 15 validated label errors."""
    import numpy as np

    with np.load(SHARED / "data" / "mnist" / "mnist_test.npz") as d:
        _validated_npz(MNIST_TEST_NPZ, d["images"], d["labels"], d["le_validated_error"], d["le_guessed_label"],
                       [str(c) for c in range(10)])


def cifar_test_source() -> None:
    """../shared/data/cifar10n's test set: 10,000 JPEGs (decoded here, written as PNG by make_noisy.py: the
    same pixels), 54 validated label errors."""
    import csv
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]  # index order
    index = {n: i for i, n in enumerate(names)}
    with open(CIFAR_DATA / "labels_test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with zipfile.ZipFile(CIFAR_DATA / "images_test.zip") as zf:
        images = np.stack([np.asarray(Image.open(io.BytesIO(zf.read(r["path"]))).convert("RGB")) for r in rows])
    _validated_npz(CIFAR_TEST_NPZ, images, np.array([index[r["label"]] for r in rows]),
                   np.array([r["validated_error"] == "true" for r in rows]),
                   np.array([index.get(r["guessed_label"], -1) for r in rows]), names)


# Roman numerals i–x and MNIST are not mirror-symmetric (iv mirrored is vi): --augment crop, as for digits.
REAL_CASES = {c.name: c for c in [
    Case("roman_numeral_review", ("--source", str(SHARED / "data" / "roman_numeral"), "--noise", "real"),
         {"augment": "crop"}, held_out=True),
    Case("mnist_test_validated", ("--source", str(MNIST_TEST_NPZ), "--noise", "column:given"),
         {"augment": "crop"}, held_out=True, source=mnist_test_source),
    Case("cifar10_test_validated", ("--source", str(CIFAR_TEST_NPZ), "--noise", "column:given"),
         {}, held_out=True, source=cifar_test_source),
]}


@dataclass
class LoadedCase:
    """A development case decoded for the proxy, with its truth aligned to the dataset's order."""

    case: Case
    ds: object  # labelaudit.data.dataset.Dataset
    is_noisy: object  # (N,) int array, 1 = mislabeled
    clean: object  # (N,) clean class index, -1 when the clean label is not a class

    def train(self, settings=None, labels=None, **kwargs):
        """``train_proxy`` on the CPU with the case's images, given labels (or ``labels``, (N,) class
        indices) and scan options (e.g. its augmentation) over ``settings`` (default ProxySettings());
        kwargs go to train_proxy."""
        import dataclasses

        import torch

        from labelaudit.training.loop import device_images, device_labels
        from labelaudit.dynamics.proxy import ProxySettings, train_proxy
        from labelaudit.noise.stopping import memorisation_check

        settings = dataclasses.replace(settings or ProxySettings(), **self.case.scan_options)
        cpu = torch.device("cpu")
        given = self.ds.labels if labels is None else labels
        return train_proxy(device_images(self.ds.images, cpu), device_labels(given, cpu),
                           len(self.ds.classes), settings, device=cpu, **{"stop_rule": memorisation_check, **kwargs})


def load_case(case: Case) -> LoadedCase:
    import numpy as np

    from labelaudit.data.dataset import load_dataset
    from labelaudit.data.sources import list_folder

    folder = build(case)
    ds = load_dataset(list_folder(folder / "images"), image_size=32, workers=2, cache_dir=WORK / "cache")
    truth = read_truth(folder).loc[ds.samples["path"]]
    index = {c: k for k, c in enumerate(ds.classes)}
    return LoadedCase(case, ds, truth["is_noisy"].astype(int).to_numpy(),
                      np.array([index.get(c, -1) for c in truth["clean_label"]]))
