"""The ``labelaudit`` command line. One small file per command; each holds only its Typer signature
and help text, then calls the library."""
from __future__ import annotations

from typing import Optional

import typer

from .._version import __version__
from .check import check_cli
from .export import export_cli
from .report import report_cli
from ..config import ScanConfig
from ..robust import TrainConfig
from ._settings import settings_command
from .scan import ALIASES as SCAN_ALIASES, scan_cli
from .demo import demo_cli
from .review import review_cli
from .settings import settings_cli
from .show import show_cli
from .train import train_cli
from .predict import predict_cli

app = typer.Typer(
    name="labelaudit",
    help="Find mislabeled samples in image-classification datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"labelaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="Show the version and exit.")) -> None:
    """Find mislabeled samples in image-classification datasets."""


def _summary(command) -> str:
    """The first paragraph of a command's docstring on one line, for ``labelaudit --help``'s command
    list (Typer would keep the docstring's line breaks there and wrap mid-sentence)."""
    return " ".join((command.__doc__ or "").split("\n\n")[0].split())


_SETTINGS = {"scan": settings_command(ScanConfig, SCAN_ALIASES), "train": settings_command(TrainConfig)}
for _name, _command in (("demo", demo_cli), ("scan", scan_cli), ("check", check_cli), ("export", export_cli), ("show", show_cli),
                        ("report", report_cli), ("review", review_cli), ("train", train_cli), ("predict", predict_cli),
                        ("settings", settings_cli)):
    app.command(_name, short_help=_summary(_command), cls=_SETTINGS.get(_name))(_command)


def main() -> None:
    app()
