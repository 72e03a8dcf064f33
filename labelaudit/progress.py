"""How library stages report progress: ``progress(stage, completed, total, info)``.

Stages call it (hash, decode, train); the CLI draws it with Rich; the library never prints."""
from __future__ import annotations

from typing import Callable

Progress = Callable[[str, int, int, dict], None]
