"""The ``labelaudit`` command line. One small file per command; each holds only its Typer signature
and help text, then calls the library."""
from __future__ import annotations

from typing import Optional

import typer

from .. import __version__
from .check import check_cli
from .export import export_cli
from .report import report_cli
from .scan import scan_cli
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


app.command("scan")(scan_cli)
app.command("check")(check_cli)
app.command("export")(export_cli)
app.command("show")(show_cli)
app.command("report")(report_cli)
app.command("train")(train_cli)
app.command("predict")(predict_cli)


def main() -> None:
    app()
