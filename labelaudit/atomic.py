"""Atomic file writes: write under a temporary name in the same folder, fsync, rename into place.

A crash never leaves a half-written file under its final name (os.replace is atomic on POSIX and
Windows within one file system)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` to fill a temporary file, then move it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    """``path`` holds exactly ``text`` (UTF-8), or keeps what it held before."""
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
