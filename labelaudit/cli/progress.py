"""Rich progress bars for the library's ``progress(stage, completed, total, info)`` callback."""
from __future__ import annotations

import contextlib

from rich.console import Console
from rich.table import Column
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ..training.distributed import env_rank, leave

_TITLES = {"hash": "Reading files", "decode": "Decoding images", "embed": "Embedding images", "train": "Training proxy",
           "fit": "Training model"}


@contextlib.contextmanager
def command_progress(console: Console, enabled: bool = True):
    """The progress bars of a command that may run under torchrun: shown by rank 0 only (``enabled``
    and rank 0), and the process group, if the command joined one, left when it ends."""
    try:
        with RichProgress(console, enabled=enabled and env_rank() == 0) as progress:
            yield progress
    finally:
        leave()


class RichProgress:
    """A context manager that shows one bar per stage; call the instance as the progress callback."""

    def __init__(self, console: Console, enabled: bool = True):
        self.enabled = enabled
        self._progress = Progress(
            # one time column (remaining while running, elapsed once done), and every text column kept
            # whole: on 80 columns (a CI log) the bar shrinks, not the numbers ("0:00:…", "10000/100…")
            TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True)), BarColumn(bar_width=12),
            MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True)),
            TimeRemainingColumn(compact=True, elapsed_when_finished=True, table_column=Column(no_wrap=True)),
            console=console, transient=False, disable=not enabled)
        self._tasks: dict[str, TaskID] = {}
        self._info: dict[str, dict] = {}

    def __enter__(self) -> "RichProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def __call__(self, stage: str, completed: int, total: int, info: dict) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(_title(stage), total=total, info="")
        seen = self._info.setdefault(stage, {})
        seen.update(info)  # per-batch calls carry the epoch; per-epoch calls add loss and speed
        self._progress.update(self._tasks[stage], completed=completed, total=total, info=_describe(seen))


def _title(stage: str) -> str:
    """The bar's title: "train run 2/3" (scan --proxy-runs) → "Training proxy run 2/3"."""
    head, _, rest = stage.partition(" ")
    return f"{_TITLES[head]} {rest}" if rest and head in _TITLES else _TITLES.get(stage, stage)


def _describe(info: dict) -> str:
    parts = []
    if "epoch" in info:
        parts.append(f"epoch {info['epoch']}/{info['epochs']}")
    if "loss" in info:
        parts.append(f"loss {info['loss']:.3f}")
    if "accuracy" in info:
        parts.append(f"held-out acc {info['accuracy']:.1%}")
    if "images_per_s" in info:
        parts.append(f"{info['images_per_s']:,.0f} img/s")
    if info.get("cached"):
        parts.append("all cached")
    elif info.get("n_cached"):
        parts.append(f"{info['n_cached']:,} more cached")
    return "  ".join(parts)
