"""Options that several commands share, defined once so their flag and help read the same everywhere."""
from __future__ import annotations

import typer

ALLOW_OUTSIDE_ROOT = typer.Option(
    False, "--allow-outside-root",
    help="Manifest: accept paths that lie outside --root (through .. or absolute paths elsewhere) instead "
         "of stopping. Only for manifests you trust.")
