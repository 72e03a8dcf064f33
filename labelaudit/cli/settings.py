"""``labelaudit settings``: every setting of a command, its default and what it does, read from the
settings dataclass itself (its field comments), so the list is never out of date."""
from __future__ import annotations

import dataclasses
import inspect
import re

import typer
from rich.console import Console
from rich.table import Table

from ..config import ScanConfig
from ..robust import TrainConfig

COMMANDS = {"scan": ScanConfig, "train": TrainConfig}
_FIELD = re.compile(r"^    (\w+): [^=]+?(?:= .*?)?(?:\s+#\s?(.*))?$")
_MORE = re.compile(r"^\s+#\s+(?!---)(.*)$")


def field_docs(settings_cls) -> list[tuple[str, object, str]]:
    """(name, default, comment) for every field of a settings dataclass, in order. A comment that runs
    on below its field (an indented ``#`` line) is joined to it."""
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else None)
                for f in dataclasses.fields(settings_cls)}
    docs: dict[str, list[str]] = {}
    last = None
    for line in inspect.getsource(settings_cls).splitlines():
        if (m := _FIELD.match(line)) and m.group(1) in defaults:
            last = m.group(1)
            docs[last] = [m.group(2) or ""]
        elif last is not None and (m := _MORE.match(line)):
            docs[last].append(m.group(1))
        else:
            last = None
    return [(name, defaults[name], " ".join(t for t in docs.get(name, []) if t)) for name in defaults]


def settings_cli(command: str = typer.Argument(..., help="scan or train.", show_default=False)) -> None:
    """List every setting of scan or train (also the advanced ones --help leaves out), with its default
    and what it does. Set one with --config 'KEY = VALUE', in a TOML file, or as --KEY VALUE."""
    if command not in COMMANDS:
        from ._errors import fail

        raise fail(f"settings {command!r}: choose scan or train", 2)
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("setting", "default", "what it does"):
        table.add_column(column, overflow="fold")
    for name, default, doc in field_docs(COMMANDS[command]):
        table.add_row(name, repr(default) if isinstance(default, str) else str(default), doc)
    Console().print(table)
