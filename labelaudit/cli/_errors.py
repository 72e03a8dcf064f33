"""Known exceptions → one line on stderr and an exit code, in one place.

Set LABELAUDIT_DEBUG=1 to get the traceback instead.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

import typer

from ..errors import LabelauditError

EXIT_INTERRUPTED = 130
PEER_GRACE_S = 5.0  # under torchrun: how long a process that lost a peer waits for torchrun to end it


def _peer_lost(exc: Exception) -> bool:
    """Whether ``exc`` is a collective failing because another process of a torchrun run ended."""
    from ..training.distributed import launched

    if not launched():
        return False
    names = {t.__name__ for t in type(exc).__mro__}
    return bool(names & {"DistError", "DistBackendError", "DistNetworkError"}) or "gloo" in str(exc).lower()


def debug() -> bool:
    return os.environ.get("LABELAUDIT_DEBUG", "").strip() not in ("", "0", "false", "no")


def fail(message: str, code: int) -> typer.Exit:
    message = " ".join(message.split("\n"))  # one line, whatever a file or column name holds
    typer.echo(f"labelaudit: error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def handle_errors(exit_code: int | None = None, *, resumable: bool = False):
    """Run a command body; map labelaudit's errors, Ctrl-C and anything unexpected to one line.

    ``exit_code`` replaces every error's own code (``check`` keeps 1 for "a threshold was passed");
    ``resumable``: the command checkpoints every epoch, so Ctrl-C's message points to --resume.
    """
    try:
        yield
    except typer.Exit:
        raise
    except LabelauditError as exc:
        if debug():
            raise
        raise fail(str(exc), exit_code or exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("labelaudit: interrupted; nothing already written was changed"
                   + ("; run the same command with --resume to continue from the last finished epoch"
                      if resumable else ""), err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # the last line of defence: never show a traceback by default
        if debug():
            raise
        if _peer_lost(exc):  # another rank failed and printed why; torchrun is about to end this one
            time.sleep(PEER_GRACE_S)
            from ..training.distributed import env_rank

            raise fail(f"process {env_rank()} stopped: another process of this torchrun run ended first "
                       "(its own message says why)", exit_code or 1) from None
        if type(exc).__name__ == "OutOfMemoryError":  # torch's, outside the training loop (which types it)
            raise fail("the GPU ran out of memory; lower --batch-size or --image-size, or use --device cpu",
                       exit_code or 1) from None
        where = type(exc).__name__
        raise fail(f"unexpected {where}: {str(exc).splitlines()[0] if str(exc) else ''} "
                   "(this is a bug in labelaudit; rerun with LABELAUDIT_DEBUG=1 and report the traceback)",
                   exit_code or 1) from None
    finally:
        sys.stderr.flush()
