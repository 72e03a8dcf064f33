"""Stage 7 — outputs: the audit folder of ../CONTRACT.md, every file written atomically.

Each Parquet file carries ``labelaudit_schema`` (the contract's version) and the direction of every
score column in its schema metadata. The folder is written beside ``out`` and swapped in with one
rename, so a crash never leaves a half-written file nor a mix of two audits.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import replace_folder, write_atomic, write_text_atomic
from .record import RunRecord, Summary
from ..decisions import SAMPLE_COLUMNS  # noqa: F401  (the contract's column order, re-exported)
from ..scores import DIRECTIONS

SCHEMA_VERSION = "1"



def suspects_of(samples: pd.DataFrame) -> pd.DataFrame:
    """suspects.parquet: the rows with ``is_label_issue``, most suspicious (rank 1) first."""
    flagged = samples[samples["is_label_issue"]]
    return flagged.sort_values("rank", kind="stable").reset_index(drop=True)


class AuditTables:
    """What every view of an audit offers (a scan's result, an audit folder read back); needs the
    attributes ``samples`` (samples.parquet) and ``run`` (run.json, a RunRecord)."""

    samples: pd.DataFrame
    run: RunRecord

    @property
    def suspects(self) -> pd.DataFrame:
        """Rows of ``samples`` with ``is_label_issue``, most suspicious first."""
        return suspects_of(self.samples)

    @property
    def ranked(self) -> pd.DataFrame:
        """Every row of ``samples``, most suspicious (rank 1) first: where to look when nothing is
        flagged but errors are expected (the noise model can miss a few isolated errors, or images of
        no class, that the ranking still puts on top; docs/scores.md)."""
        return self.samples.sort_values("rank", kind="stable").reset_index(drop=True)

    @property
    def summary(self) -> "Summary":
        return self.run.summary


def _with_metadata(schema: pa.Schema, columns) -> pa.Schema:
    """``schema`` with the schema version and the score directions of ``columns`` attached."""
    directions = {c: d for c, d in DIRECTIONS.items() if c in columns}
    meta = dict(schema.metadata or {})
    meta[b"labelaudit_schema"] = SCHEMA_VERSION.encode()
    if directions:
        meta[b"labelaudit_directions"] = json.dumps(directions).encode()
    return schema.with_metadata(meta)


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` atomically, with the schema version and score directions attached."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(_with_metadata(table.schema, df.columns).metadata)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def write_json(obj: Any, path: Path) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    write_text_atomic(path, text)


REVIEW_JSON = "review.json"  # the estimates of verified answers (labelaudit review): they belong to one audit
UNVERIFIED = "unverified"  # the scan's own files, kept when a review's answers rewrite the audit
AUDIT_FILES = ("samples.parquet", "suspects.parquet", "weights.parquet", "noise.parquet", "transition.parquet",
               "trajectories.parquet", "errors.parquet", "report.html", "run.json")  # run.json last: the marker


def write_audit(out: Path, *, samples: pd.DataFrame, noise: pd.DataFrame,
                trajectories: "pd.DataFrame | Trajectories",
                errors: pd.DataFrame, run: RunRecord | dict, transition: pd.DataFrame | None = None,
                report_html: str | None = None, drop: tuple[str, ...] = ()) -> None:
    """Write the audit folder: samples, suspects, weights, noise, transition, trajectories, errors,
    report.html, run.json.

    The files are written into a staging folder that replaces ``out`` in one rename
    (:func:`atomic.replace_folder`): a crash leaves either the previous audit or the new one. Other
    files in ``out`` are kept, except the names in ``drop`` and an earlier audit's review.json and
    unverified/ (its answers estimate that audit; the worksheet they came from is the user's file and
    stays).
    """
    with replace_folder(out, replaces=AUDIT_FILES, drop=(*drop, REVIEW_JSON, UNVERIFIED)) as stage:
        write_tables(stage, samples, noise, transition)
        if isinstance(trajectories, Trajectories):
            trajectories.write(stage / "trajectories.parquet")
        else:
            write_parquet(trajectories, stage / "trajectories.parquet")
        write_parquet(errors, stage / "errors.parquet")
        if report_html is not None:
            write_text_atomic(stage / "report.html", report_html)
        write_json(run.to_json() if isinstance(run, RunRecord) else run, stage / "run.json")  # last: its presence marks a complete audit


def write_tables(stage: Path, samples: pd.DataFrame, noise: pd.DataFrame, transition: pd.DataFrame | None) -> None:
    """samples, suspects, weights, noise and (when given) transition.parquet into ``stage``: the tables
    a scan writes and a review rewrites."""
    write_parquet(samples, stage / "samples.parquet")
    write_parquet(suspects_of(samples), stage / "suspects.parquet")
    write_parquet(samples[["path", "given_label", "weight"]], stage / "weights.parquet")
    write_parquet(noise, stage / "noise.parquet")
    if transition is not None:
        write_parquet(transition, stage / "transition.parquet")


@dataclass(frozen=True)
class Trajectories:
    """Every sample's loss and margin (and LIMIT distance) in every epoch, as the (E, N) arrays the
    recorders hold. trajectories.parquet is written from them one epoch at a time (a row group each),
    so the long table of N·E rows is never built to be written; :meth:`frame` builds it when asked."""

    loss: np.ndarray
    margin: np.ndarray
    limit: np.ndarray | None = None

    def epoch(self, e: int) -> pd.DataFrame:
        """Epoch ``e`` (0-based) in long form: sample_id, epoch (from 1), loss, margin[, limit_distance]."""
        n = self.loss.shape[1]
        columns = {"sample_id": np.arange(n, dtype=np.int64), "epoch": np.full(n, e + 1, dtype=np.int64),
                   "loss": self.loss[e].astype(np.float32), "margin": self.margin[e].astype(np.float32)}
        if self.limit is not None:
            columns["limit_distance"] = self.limit[e].astype(np.float32)
        return pd.DataFrame(columns)

    def frame(self) -> pd.DataFrame:
        """All epochs, epoch after epoch."""
        return pd.concat([self.epoch(e) for e in range(self.loss.shape[0])], ignore_index=True)

    def write(self, path: Path) -> None:
        """trajectories.parquet at ``path``, atomically, one row group per epoch."""
        def write(tmp: Path) -> None:
            first = pa.Table.from_pandas(self.epoch(0), preserve_index=False)
            schema = _with_metadata(first.schema, first.column_names)
            with pq.ParquetWriter(tmp, schema) as writer:
                writer.write_table(first.replace_schema_metadata(schema.metadata))
                for e in range(1, self.loss.shape[0]):
                    table = pa.Table.from_pandas(self.epoch(e), preserve_index=False)
                    writer.write_table(table.replace_schema_metadata(schema.metadata))

        write_atomic(path, write)
