"""Known exceptions → one line on stderr and an exit code, in one place.

Set LABELAUDIT_DEBUG=1 to get the traceback instead.
"""
from __future__ import annotations

import contextlib
import os
import sys

import typer

from ..errors import LabelauditError

EXIT_INTERRUPTED = 130


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
        if type(exc).__name__ == "OutOfMemoryError":  # torch's, outside the training loop (which types it)
            raise fail("the GPU ran out of memory; lower --batch-size or --image-size, or use --device cpu",
                       exit_code or 1) from None
        where = type(exc).__name__
        raise fail(f"unexpected {where}: {str(exc).splitlines()[0] if str(exc) else ''} "
                   "(this is a bug in labelaudit; rerun with LABELAUDIT_DEBUG=1 and report the traceback)",
                   exit_code or 1) from None
    finally:
        sys.stderr.flush()
