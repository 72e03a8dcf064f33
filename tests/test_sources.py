"""Listing: ImageFolder trees and manifests in every format, with clear errors."""
import json

import pandas as pd
import pytest
from PIL import Image

from labelaudit.data.dataset import sort_classes
from labelaudit.errors import UsageError
from labelaudit.data.sources import list_folder, list_manifest


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)


def test_folder_listing_nested_sorted_and_errors(tmp_path):
    for rel in ("b/x.png", "a/deep/er/y.png", "a/z.png", "b/.hidden.png", ".git/obj.png"):
        _img(tmp_path / rel)
    (tmp_path / "a" / "notes.txt").write_text("hi")
    _img(tmp_path / "stray.png")
    listing = list_folder(tmp_path)
    assert listing.samples["path"].tolist() == ["a/deep/er/y.png", "a/z.png", "b/x.png"]
    assert listing.samples["given_label"].tolist() == ["a", "a", "b"]
    errors = dict(zip(listing.errors["path"], listing.errors["error"]))
    assert set(errors) == {"a/notes.txt", "stray.png"}
    assert "not an image" in errors["a/notes.txt"] and "class folder" in errors["stray.png"]


def test_folder_errors_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such folder"):
        list_folder(tmp_path / "missing")
    (tmp_path / "f.csv").write_text("path,label\n")
    with pytest.raises(UsageError, match="--manifest"):
        list_folder(tmp_path / "f.csv")


def _write(df: pd.DataFrame, path):
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_manifest_formats_with_integer_labels(tmp_path, suffix):
    _img(tmp_path / "imgs" / "0.png")
    _img(tmp_path / "imgs" / "1.png")
    df = pd.DataFrame({"path": ["imgs/0.png", "imgs/1.png"], "label": [3, 10]})
    _write(df, tmp_path / f"m{suffix}")
    listing = list_manifest(tmp_path / f"m{suffix}")
    assert listing.samples["given_label"].tolist() == ["3", "10"]
    assert listing.samples["file"].tolist() == [str(tmp_path / "imgs/0.png"), str(tmp_path / "imgs/1.png")]


def test_manifest_custom_columns_root_and_empty_labels(tmp_path):
    data = tmp_path / "data"
    _img(data / "a.png")
    (tmp_path / "meta").mkdir()
    pd.DataFrame({"file": ["a.png", "b.png"], "y": ["cat", ""]}).to_csv(tmp_path / "meta" / "m.csv", index=False)
    listing = list_manifest(tmp_path / "meta" / "m.csv", root=data, path_column="file", label_column="y")
    assert listing.samples["path"].tolist() == ["a.png"]
    assert listing.errors.to_dict("records") == [
        {"path": "b.png", "error": "empty label in the manifest; fill it in or remove the row"}]


def test_manifest_errors_name_the_fix(tmp_path):
    pd.DataFrame({"file": ["a.png"], "y": [1]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(UsageError, match=r"no column 'path' \(columns: file, y\); name the right one with --path-column"):
        list_manifest(tmp_path / "m.csv")
    with pytest.raises(UsageError, match="unknown format"):
        list_manifest(tmp_path / "m.xlsx")
    with pytest.raises(UsageError, match="no such file"):
        list_manifest(tmp_path / "nope.csv")


def test_csv_with_bom_and_float_labels(tmp_path):
    (tmp_path / "m.csv").write_bytes("\ufeffpath,label\na.png,1.0\n".encode("utf-8"))
    listing = list_manifest(tmp_path / "m.csv")
    assert listing.samples["given_label"].tolist() == ["1.0"]  # CSV text is kept as written
    pd.DataFrame({"path": ["a.png"], "label": [1.0]}).to_parquet(tmp_path / "m.parquet")
    assert list_manifest(tmp_path / "m.parquet").samples["given_label"].tolist() == ["1"]


def test_class_order_numeric_when_all_integers():
    assert sort_classes(["10", "2", "1"]) == ["1", "2", "10"]
    assert sort_classes(["dog", "cat", "10"]) == ["10", "cat", "dog"]
