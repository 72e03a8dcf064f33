"""run.json through its one typed record: a scan's file reads back to the same record, older files
(keys they lack) read with None, keys this version does not know are kept, and dict-style reads of
the contract's keys still work."""
from __future__ import annotations

import json

from labelaudit.audit.read import load_audit
from labelaudit.audit.record import RunRecord, Summary


def test_a_scans_run_json_round_trips_through_the_record(scanned):
    tmp, _ = scanned
    raw = json.loads((tmp / "audit" / "run.json").read_text())
    record = RunRecord.from_json(raw)
    assert record.to_json() == raw and list(record.to_json()) == list(raw)  # same keys, same order
    assert record.summary.noise_rate == raw["summary"]["noise_rate"]
    assert record.data.classes == raw["data"]["classes"] and record.data.extra["n_listed"] == raw["data"]["n_listed"]
    assert record.noise_model.method == raw["noise_model"]["method"]
    assert record["summary"]["n_samples"] == raw["summary"]["n_samples"]  # the file's keys, for notebooks
    audit = load_audit(tmp / "audit")
    assert isinstance(audit.run, RunRecord) and isinstance(audit.summary, Summary)
    assert audit.summary.n_label_issues == int(audit.samples["is_label_issue"].sum())


def test_an_older_file_reads_with_none_and_unknown_keys_are_kept():
    old = {"summary": {"noise_rate": 0.1, "n_label_issues": 3, "n_samples": 30, "n_errors": 0, "n_classes": 3,
                       "from_the_future": 1},
           "noise_model": {"method": "margin mixture", "weights": [0.9, 0.1]}, "config": {"epochs": 8},
           "data": {"root": "/x", "classes": ["a", "b", "c"]}, "something_new": {"k": 2}}
    record = RunRecord.from_json(old)
    s = record.summary
    assert s.noise_rate_interval is None and s.proxy_kappa is None and s.noise_rate_runs is None
    assert record.noise_model.runs is None and record.noise_model.extra == {"weights": [0.9, 0.1]}
    assert record.epochs_run is None and record.resumed_from_epoch == 0 and record.trusted is None
    out = record.to_json()
    assert out["something_new"] == {"k": 2} and out["summary"]["from_the_future"] == 1
    assert {**s}["noise_rate"] == 0.1  # a mapping of the file's keys: {**result.summary} in scripts


def test_trajectories_are_written_one_epoch_per_row_group(tmp_path):
    """trajectories.parquet from the (E, N) records, epoch by epoch: the long table's rows and dtypes,
    one row group per epoch, the schema version attached; the frame is the same table in memory."""
    import json

    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from labelaudit.audit.write import Trajectories

    loss = np.arange(12, dtype=np.float32).reshape(3, 4)
    records = Trajectories(loss, -loss, limit=loss / 10)
    records.write(tmp_path / "t.parquet")
    file = pq.ParquetFile(tmp_path / "t.parquet")
    assert file.metadata.num_row_groups == 3 and file.metadata.num_rows == 12
    assert b"labelaudit_schema" in file.schema_arrow.metadata
    assert "limit_distance" in json.loads(file.schema_arrow.metadata[b"labelaudit_directions"])
    table = pd.read_parquet(tmp_path / "t.parquet")
    assert table["sample_id"].tolist() == [0, 1, 2, 3] * 3 and table["epoch"].tolist() == [1] * 4 + [2] * 4 + [3] * 4
    assert table["loss"].tolist() == list(range(12)) and (table["margin"] == -table["loss"]).all()
    assert str(table["loss"].dtype) == "float32" and str(table["sample_id"].dtype) == "int64"
    np.testing.assert_allclose(table["limit_distance"], np.arange(12) / 10, rtol=1e-6)
    pd.testing.assert_frame_equal(table, records.frame())
