"""How library stages report progress: ``progress(stage, completed, total, info)``.

Stages call it (hash, decode, train); the CLI draws it with Rich; the library never prints."""
from __future__ import annotations

from typing import Callable

Progress = Callable[[str, int, int, dict], None]


def as_stage(progress: Progress | None, stage: str) -> Progress | None:
    """``progress`` with every report under ``stage`` (a sub-run's own stage name); None stays None."""
    if progress is None:
        return None
    return lambda _stage, done, total, info: progress(stage, done, total, info)
