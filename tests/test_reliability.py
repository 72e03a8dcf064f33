"""Bad input loses nothing and explains itself: --max-errors, duplicate manifest rows, hostile files.

Each bad file is built here; the scan goes on past it, and errors.parquet gives a one-line reason.
"""
import struct
import zlib

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from labelaudit import scan
from labelaudit.cli import app
from labelaudit.decode import decode_image
from labelaudit.errors import DataError, DecodeError, UsageError
from labelaudit.pipeline import parse_max_errors
from labelaudit.sources import list_manifest

from .conftest import FAST, FAST_ARGS, make_color_folder

runner = CliRunner()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims width×height pixels (over Pillow's 2× bomb limit)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) \
        + _png_chunk(b"IEND", b"")


def broken_crc_png(tmp_path) -> bytes:
    Image.new("RGB", (16, 16), (10, 20, 30)).save(tmp_path / "ok.png")
    data = bytearray((tmp_path / "ok.png").read_bytes())
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


@pytest.fixture
def bad_folder(tmp_path):
    root = tmp_path / "images"
    make_color_folder(root)
    (root / "red" / "empty.jpg").write_bytes(b"")
    (root / "red" / "notes.jpg").write_text("this is text, not a JPEG\n")
    (root / "green" / "bomb.png").write_bytes(bomb_png())
    (root / "blue" / "crc.png").write_bytes(broken_crc_png(tmp_path))
    return root


def test_bad_files_each_get_a_reason_and_the_scan_goes_on(bad_folder, tmp_path):
    result = scan(bad_folder, out=tmp_path / "audit", **FAST)
    errors = pd.read_parquet(tmp_path / "audit" / "errors.parquet").set_index("path")["error"]
    assert len(result.samples) == 72 and result.summary["n_errors"] == 4
    assert errors["red/empty.jpg"] == "empty file (0 bytes); copy it again or remove it"
    assert "not an image" in errors["red/notes.jpg"]
    assert "decompression bomb" in errors["green/bomb.png"]
    assert errors["blue/crc.png"].startswith("corrupt PNG file")
    assert all("\n" not in e for e in errors)  # one line each


def test_decompression_bomb_is_refused_without_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_image(str(tmp_path / "bomb.png"), 16)


@pytest.mark.parametrize("value, expected", [("20", (20.0, False)), ("5%", (0.05, True)), (" 0 ", (0.0, False))])
def test_parse_max_errors(value, expected):
    assert parse_max_errors(value) == expected


@pytest.mark.parametrize("value", ["-1", "120%", "five", "2.5"])
def test_parse_max_errors_rejects(value):
    with pytest.raises(UsageError, match="--max-errors"):
        parse_max_errors(value)


def test_max_errors_aborts_and_still_writes_the_reasons(bad_folder, tmp_path):
    out = tmp_path / "audit"
    res = runner.invoke(app, ["scan", str(bad_folder), "--out", str(out), "--max-errors", "3", *FAST_ARGS])
    assert res.exit_code == 1
    assert "--max-errors 3: 4 of 76 listed file(s) failed" in res.output and "Traceback" not in res.output
    assert "most often: corrupt PNG file" in res.output and "(1, e.g. blue/crc.png)" in res.output
    assert len(pd.read_parquet(out / "errors.parquet")) == 4 and not (out / "run.json").exists()
    res = runner.invoke(app, ["scan", str(bad_folder), "--out", str(out), "--max-errors", "6%", *FAST_ARGS])
    assert res.exit_code == 0, res.output  # 4 of 76 = 5.3%
    res = runner.invoke(app, ["scan", str(bad_folder), "--out", str(out), "--max-errors", "5%", *FAST_ARGS])
    assert res.exit_code == 1 and "more than allowed" in res.output


def test_failed_scan_never_touches_an_earlier_audit(bad_folder, tmp_path):
    out = tmp_path / "audit"
    scan(bad_folder, out=out, **FAST)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DataError, match="max-errors"):
        scan(bad_folder, out=out, max_errors="0", **FAST)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_manifest_duplicates_error_or_dedupe(tmp_path):
    make_color_folder(tmp_path / "images")
    rows = [(f"images/{p.parent.name}/{p.name}", p.parent.name) for p in sorted((tmp_path / "images").rglob("*.png"))]
    rows.insert(5, ("./" + rows[0][0], "green"))  # the same file again, spelt differently, other label
    manifest = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(manifest, index=False)
    with pytest.raises(UsageError, match=r"listed more than once \(rows 1 and 6\).*--dedupe"):
        list_manifest(manifest)
    listing = list_manifest(manifest, dedupe=True)
    assert len(listing.samples) == 72
    assert listing.errors.to_dict("records") == [
        {"path": "./" + rows[0][0], "error": "duplicate of manifest row 1; left out by --dedupe"}]
    res = runner.invoke(app, ["scan", "--manifest", str(manifest), "--out", str(tmp_path / "a"), *FAST_ARGS])
    assert res.exit_code == 2 and "--dedupe" in res.output
    res = runner.invoke(app, ["scan", "--manifest", str(manifest), "--out", str(tmp_path / "a"), "--dedupe",
                              *FAST_ARGS])
    assert res.exit_code == 0, res.output
