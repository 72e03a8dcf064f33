"""Per-epoch checkpoints of the training loop, so ``scan --resume`` and ``train --resume`` continue an
interrupted run.

After every finished epoch the whole training state goes to ``<out>/checkpoint.pt``, written
atomically: the network and its optimiser, the three random generators (global, augmentation, data
order) and every hook's state (the recorded dynamics, LIMIT's f and q, a schedule, a momentum model). Resuming
restores all of it, so a resumed scan gives the same outputs as one that never stopped (same seed,
same device). The file holds tensors, numbers and strings only: ``torch.load(weights_only=True)``
reads it, never pickle of arbitrary objects. A finished scan deletes it.

A checkpoint is tied to a key (the training settings, the device type and the data's fingerprint):
resuming with anything else changed is a UsageError rather than a silent mix of two runs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..errors import DataError, UsageError

CHECKPOINT_FILE = "checkpoint.pt"
_EXTRA_RUN_FILE = "checkpoint-run{}.pt"  # the extra runs of scan --proxy-runs K, k = 2..K
FORMAT = 4  # 3: with LIMIT q's moving average; 4: the one loop's layout (every hook's state in order)


def run_checkpoint_file(run: int) -> str:
    """The checkpoint's file name for proxy run ``run``: ``checkpoint.pt`` for the audit's own (run 1),
    ``checkpoint-run<k>.pt`` for the extra runs of ``scan --proxy-runs K``."""
    return CHECKPOINT_FILE if run == 1 else _EXTRA_RUN_FILE.format(run)


def checkpoint_files(folder: Path) -> tuple[str, ...]:
    """Every checkpoint name a finished scan removes from ``folder``: run 1's, and the extra runs' that
    are there, whatever K left them."""
    return (CHECKPOINT_FILE, *(f.name for f in Path(folder).glob(_EXTRA_RUN_FILE.format("*"))))


def checkpoint_key(**parts: Any) -> str:
    """A short digest of everything that must match for a checkpoint to be resumed."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class Checkpointer:
    """Where the checkpoint of one run goes, and the key it must carry."""

    path: Path
    key: str
    resume: bool = False  # load an existing checkpoint (else: start afresh and overwrite it)
    command: str = "scan"  # the command the messages tell to run again

    def save(self, state: dict) -> None:
        import torch

        write_atomic(self.path, lambda tmp: torch.save({"key": self.key, "format": FORMAT, **state}, tmp))

    def load(self) -> dict | None:
        """The saved state when resuming and a checkpoint exists, else None.

        UsageError when it belongs to other settings or data; DataError when it cannot be read.
        """
        if not self.resume or not self.path.is_file():
            return None
        import torch

        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: torch raises several types
            raise DataError(f"{self.path}: unreadable checkpoint ({str(exc).splitlines()[0][:120]}); "
                            f"delete it and {self.command} again without --resume") from None
        if not isinstance(state, dict) or state.get("key") != self.key:
            raise UsageError(f"--resume: {self.path} was made with other settings or other data; {self.command} with "
                             "the same options as the interrupted run, or drop --resume to start over")
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
