import pytest
"""Fuzzing the manifest reader: any table, in any format and encoding, with any column names, paths
and labels, is either read (every row a sample or an error row) or refused with labelaudit's own
error — never another exception, never a traceback."""
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelaudit.data.decode import hash_files
from labelaudit.errors import LabelauditError
from labelaudit.data.sources import list_manifest, read_manifest_table

FORMATS = ("csv", "tsv", "jsonl", "parquet")
ENCODINGS = ("utf-8", "utf-8-sig", "latin-1", "utf-16")

path_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["a.png", "./a.png", "../outside.png", "/etc/passwd", "sub/../a.png", "", " ", "a\x00b.png",
                     "x" * 5000 + ".png", "dir/", "~/.ssh/id_rsa"]),
)
label_value = st.one_of(st.none(), st.text(max_size=300), st.integers(-10**12, 10**12),
                        st.floats(allow_nan=True, allow_infinity=True), st.booleans())
column_name = st.one_of(st.sampled_from(["path", "label", "Path", " label", "path "]), st.text(max_size=12))


@st.composite
def manifests(draw):
    n = draw(st.integers(0, 12))
    columns = draw(st.lists(column_name, min_size=1, max_size=4, unique=True))
    if draw(st.booleans()):
        columns = list(dict.fromkeys(["path", "label", *columns]))
    rows = {c: [draw(path_text) if c == "path" else draw(label_value) for _ in range(n)] for c in columns}
    return pd.DataFrame(rows), draw(st.sampled_from(FORMATS)), draw(st.sampled_from(ENCODINGS)), \
        draw(st.booleans())


def _write(df: pd.DataFrame, fmt: str, encoding: str, folder: Path) -> Path:
    path = folder / f"m.{fmt}"
    if fmt == "parquet":
        df.astype(str).to_parquet(path) if len(df.columns) else path.write_bytes(b"")
    elif fmt == "jsonl":
        text = "".join(json.dumps({str(k): (None if isinstance(v, float) and v != v else v)
                                   for k, v in row.items()}, default=str) + "\n" for row in df.to_dict("records"))
        path.write_bytes(text.encode(encoding, errors="replace"))
    else:
        text = df.to_csv(index=False, sep="\t" if fmt == "tsv" else ",")
        path.write_bytes(text.encode(encoding, errors="replace"))
    return path


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=manifests())
def test_manifest_reader_reads_or_raises_its_own_error(case):
    df, fmt, encoding, dedupe = case
    with tempfile.TemporaryDirectory() as tmp:
        manifest = _write(df, fmt, encoding, Path(tmp))
        try:
            listing = list_manifest(manifest, dedupe=dedupe)
        except LabelauditError as exc:
            assert str(exc) and "\n" not in str(exc).strip()  # one line
            return
        table = read_manifest_table(manifest)  # the rows as read (a CSV writer's bare \r makes two lines)
        assert len(listing.samples) + len(listing.errors) == len(table)  # every row: a sample or an error row
        if fmt == "parquet":
            assert len(table) == len(df)
        assert listing.samples["path"].map(lambda p: "\x00" not in p).all()
        root = os.path.join(os.path.abspath(tmp), "")
        assert all(os.path.normpath(f).startswith(root) for f in listing.samples["file"])  # never outside
        for _, err in hash_files(listing.samples["file"].tolist(), threads=2):  # missing files: reasons
            assert err


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=400), fmt=st.sampled_from(FORMATS))
def test_random_bytes_as_a_manifest(data, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / f"m.{fmt}"
        manifest.write_bytes(data)
        try:
            list_manifest(manifest)
        except LabelauditError as exc:
            assert "--manifest" in str(exc)
