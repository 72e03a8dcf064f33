"""Options that several commands share, defined once so their flag and help read the same everywhere."""
from __future__ import annotations

import typer

ALLOW_OUTSIDE_ROOT = typer.Option(
    False, "--allow-outside-root",
    help="Manifest: accept paths that lie outside --root (through .. or absolute paths elsewhere) instead "
         "of stopping. Only for manifests you trust.")

TRUSTED = typer.Option(
    None, "--trusted",
    help="Manifest (path,label) of samples whose labels were verified by hand; relative paths resolve against "
         "its folder. Paths may or may not also be in DATA.")

CONFIG = typer.Option(
    [], "--config", "-c", show_default=False, metavar="FILE|'KEY = VALUE'",
    help="Advanced settings: a TOML file, or one 'key = value' line (e.g. 'proxy_runs = 3'); repeatable, later "
         "wins. Also read from \\[tool.labelaudit.<command>] in pyproject.toml.")
