"""Reading an audit folder back (CONTRACT.md): what ``check``, ``export``, ``show`` and ``report`` use.

Nothing here retrains or rescans; an audit folder is complete when run.json exists (scan writes it
last), and its Parquet files carry the schema version they were written with.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..errors import DataError, UsageError
from ..noise.mixture import EARLY_EPOCHS, early_agreement
from .record import RunRecord
from .write import REVIEW_JSON, SCHEMA_VERSION, AuditTables


@dataclass
class Audit(AuditTables):
    """The tables of one audit folder."""

    path: Path
    samples: pd.DataFrame
    noise: pd.DataFrame
    run: RunRecord
    errors: pd.DataFrame
    transition: pd.DataFrame | None = None
    review: dict | None = None  # review.json: the estimates of verified answers (labelaudit review), if any

    @property
    def class_rates(self) -> pd.DataFrame:
        """noise.parquet's class rows: label, n_samples, noise_rate, n_mislabeled (given-label view)."""
        return self.noise[self.noise["scope"] == "class"].reset_index(drop=True)

    def trajectory(self, column: str, epochs: int | None = None) -> np.ndarray | None:
        """(E, N) one column of trajectories.parquet (``loss`` or ``margin``) for every epoch (the first
        ``epochs`` only, when given), in samples.parquet's order; None when the folder has no trajectories."""
        path = self.path / "trajectories.parquet"
        if not path.is_file():
            return None
        t = pd.read_parquet(path, columns=["sample_id", "epoch", column],
                            filters=None if epochs is None else [("epoch", "<=", epochs)])
        wide = t.pivot(index="epoch", columns="sample_id", values=column).sort_index()
        return wide.reindex(columns=self.samples["sample_id"]).to_numpy()

    def early_agreement(self) -> np.ndarray | None:
        """(N,) each sample's early agreement (noise.mixture.early_agreement: positive margins in the first
        epochs), in samples.parquet's order: what the scan's noise model read, so a refit of it gives the
        scan's fit. None when the folder has no trajectories."""
        margin = self.trajectory("margin", EARLY_EPOCHS)
        return None if margin is None else early_agreement(margin)

    def file_of(self, path: str) -> Path:
        """Where a sample's image is on disk: its path as listed, resolved against the scan's root."""
        return Path(path) if os.path.isabs(path) else Path(self.run.data.root) / path

    def files(self) -> pd.Series:
        """:meth:`file_of` for every sample, as strings, in samples.parquet's order (vectorised)."""
        paths = self.samples["path"].astype(str)
        absolute = paths.map(os.path.isabs).astype(bool)
        return paths.where(absolute, str(self.run.data.root).rstrip(os.sep) + os.sep + paths)


def is_audit_dir(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "run.json").is_file()


def _read(path: Path) -> pd.DataFrame:
    try:
        meta = pq.read_schema(path).metadata or {}
        table = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({str(exc).splitlines()[0]}); scan again to rewrite it") from None
    version = meta.get(b"labelaudit_schema", b"").decode()
    if version and version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise DataError(f"{path}: written with output schema {version}, this labelaudit reads schema "
                        f"{SCHEMA_VERSION}; scan again or use the labelaudit version that wrote it")
    return table


def load_audit(path: str | os.PathLike) -> Audit:
    """Read an audit folder. UsageError when it is not one; DataError when it is damaged."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such folder; pass the --out folder of a labelaudit scan")
    if not is_audit_dir(path):
        raise UsageError(f"{path}: not a labelaudit audit folder (no run.json); run `labelaudit scan` first "
                         f"and pass its --out folder")
    try:
        run = RunRecord.from_json(json.loads((path / "run.json").read_text()))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path / 'run.json'}: unreadable ({exc}); scan again to rewrite it") from None
    missing = [name for name in ("samples.parquet", "noise.parquet") if not (path / name).is_file()]
    if missing:
        raise DataError(f"{path}: incomplete audit, {', '.join(missing)} missing; scan again")
    errors = _read(path / "errors.parquet") if (path / "errors.parquet").is_file() \
        else pd.DataFrame({"path": pd.Series(dtype=str), "error": pd.Series(dtype=str)})
    transition = _read(path / "transition.parquet") if (path / "transition.parquet").is_file() else None
    samples = _read(path / "samples.parquet")
    for column in ("path", "given_label", "predicted_label"):
        samples[column] = samples[column].astype(str)
    review = None
    if (path / REVIEW_JSON).is_file():
        try:
            review = json.loads((path / REVIEW_JSON).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path / REVIEW_JSON}: unreadable ({exc}); run labelaudit review --answers again "
                            "to rewrite it") from None
    return Audit(path, samples, _read(path / "noise.parquet"), run, errors, transition, review)
