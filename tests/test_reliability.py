"""Bad input loses nothing and explains itself: --max-errors, duplicate manifest rows, hostile files.

Each bad file is built here; the scan goes on past it, and errors.parquet gives a one-line reason.
"""
import ast
import json
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import labelaudit
from labelaudit import scan
from labelaudit.cli import app
from labelaudit.data.decode import _decode_chunk, decode_image, hash_files
from labelaudit.errors import DataError, DecodeError, TrainingError, UsageError
from labelaudit.data.dataset import parse_max_errors
from labelaudit.data.sources import NOT_UTF8, list_folder, list_manifest

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


@pytest.mark.slow
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


# ------------------------------------------------------------------------------ numerics

def test_diverging_training_stops_with_the_fix_and_writes_no_scores(color_folder, tmp_path):
    root, _ = color_folder
    with pytest.raises(TrainingError, match=r"training loss became (nan|inf).*lower --lr \(now 1e\+0?8\)"):
        scan(root, out=tmp_path / "audit", **{**FAST, "lr": 1e8})
    assert not (tmp_path / "audit" / "samples.parquet").exists()  # no NaN ever reaches a score file
    res = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "audit"), *FAST_ARGS, "--lr", "1e8",
                              "--quiet"])
    assert res.exit_code == 1
    assert res.output.startswith("labelaudit: error: training loss became") and res.output.count("\n") == 1


# ------------------------------------------------------------------------------ files and folders

def _unprivileged(fn, *args):
    """``fn(*args)`` as the unprivileged user 'nobody' (root reads every file regardless of its mode)."""
    if os.geteuid() != 0:
        return fn(*args)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, exit without cleanup
        try:
            os.setgid(65534)
            os.setuid(65534)
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
            result = f"raised {exc!r}"
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return json.loads(text)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to drop privileges")
def test_file_without_read_permission_gets_a_reason():
    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # not under pytest's 0700 folder: 'nobody' must reach it
    try:
        folder.chmod(0o755)
        image = folder / "locked.png"
        Image.new("RGB", (16, 16), (1, 2, 3)).save(image)
        image.chmod(0o000)

        def hash_and_decode(file):
            return [hash_files([file], threads=1)[0][1], _decode_chunk([file], 16)[1][0]]

        reasons = _unprivileged(hash_and_decode, str(image))
        assert reasons == ["permission denied; make the file readable (chmod +r) or remove it"] * 2
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_symlink_loops_end_and_linked_class_folders_are_listed(tmp_path):
    root = tmp_path / "images"
    make_color_folder(root)
    elsewhere = tmp_path / "more_red"
    make_color_folder(tmp_path / "other", n_per_class=3, flips_per_class=0)
    os.rename(tmp_path / "other" / "red", elsewhere)
    os.symlink(elsewhere, root / "red" / "linked")  # a linked folder of 3 more red images: followed
    os.symlink(root / "red", root / "red" / "loop")  # a loop back to its own class folder
    os.symlink(root, root / "green" / "up")  # a loop back to the root
    listing = list_folder(root)
    assert len(listing.samples) == 75
    assert (listing.samples["path"].str.startswith("red/linked/")).sum() == 3
    assert listing.errors.to_dict("records") == [
        {"path": "green/up", "error": "symbolic link to a folder already listed (the root); skipped so no image "
                                      "is listed twice and link loops end"},
        {"path": "red/loop", "error": "symbolic link to a folder already listed (red); skipped so no image is "
                                      "listed twice and link loops end"}]


@pytest.mark.slow
def test_non_utf8_file_name_goes_to_errors_with_the_fix(tmp_path):
    root = tmp_path / "images"
    make_color_folder(root)
    try:
        os.rename(root / "red" / "red_005.png", os.fsencode(root / "red") + b"/caf\xe9.png")
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    result = scan(root, out=tmp_path / "audit", **FAST)
    assert len(result.samples) == 71
    errors = pd.read_parquet(tmp_path / "audit" / "errors.parquet")
    assert errors.to_dict("records") == [{"path": "red/caf\\xe9.png", "error": NOT_UTF8}]
    assert "rename it to a UTF-8 name" in NOT_UTF8


@pytest.mark.slow
def test_long_labels_a_one_sample_class_and_2000_classes(tmp_path):
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    names = [f"class_{k:04d}" for k in range(1998)] + ["x" * 200, "solo"]
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(1 if name == "solo" else 2):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    result = scan(root, out=tmp_path / "audit", epochs=1, image_size=16, batch_size=128, workers=1, augment="none")
    assert result.run["data"]["n_classes"] == 2000 and len(result.samples) == 3999
    noise = pd.read_parquet(tmp_path / "audit" / "noise.parquet")
    assert set(noise.loc[noise["scope"] == "class", "label"]) == set(names)
    assert np.isfinite(result.samples["score"]).all() and result.samples["p_mislabeled"].between(0, 1).all()
    assert (tmp_path / "audit" / "report.html").stat().st_size > 0


# ------------------------------------------------------------------------------ manifests

def test_manifest_paths_outside_the_root_are_refused_unless_allowed(tmp_path):
    make_color_folder(tmp_path / "data" / "images")
    outside = tmp_path / "secret.png"
    Image.new("RGB", (16, 16)).save(outside)
    inside = [(f"images/{p.parent.name}/{p.name}", p.parent.name)
              for p in sorted((tmp_path / "data" / "images").rglob("*.png"))]
    for hostile in ("../secret.png", str(outside), "images/../../secret.png"):
        manifest = tmp_path / "data" / "m.csv"
        pd.DataFrame(inside + [(hostile, "red")], columns=["path", "label"]).to_csv(manifest, index=False)
        with pytest.raises(UsageError, match=r"1 path\(s\) lie outside the root .*row 73.*--allow-outside-root"):
            list_manifest(manifest)
        assert len(list_manifest(manifest, allow_outside_root=True).samples) == 73
    res = runner.invoke(app, ["scan", "--manifest", str(manifest), "--out", str(tmp_path / "a"), *FAST_ARGS])
    assert res.exit_code == 2 and "--allow-outside-root" in res.output and not (tmp_path / "a").exists()
    res = runner.invoke(app, ["scan", "--manifest", str(manifest), "--out", str(tmp_path / "a"), *FAST_ARGS,
                              "--allow-outside-root", "--quiet"])
    assert res.exit_code == 0, res.output
    # absolute paths inside the root are fine
    absolute = tmp_path / "data" / "abs.csv"
    pd.DataFrame([(str(tmp_path / "data" / p), lab) for p, lab in inside],
                 columns=["path", "label"]).to_csv(absolute, index=False)
    assert len(list_manifest(absolute).samples) == 72


def test_image_size_below_what_the_networks_take_is_refused(color_folder):
    with pytest.raises(UsageError, match="--image-size 8: expected a side length from 16 to 1024 px"):
        scan(color_folder[0], out=None, **{**FAST, "image_size": 8})


# ------------------------------------------------------------------------------ safety

def _calls(tree, module, func):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == func \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == module:
            yield node


def test_no_pickle_anywhere_in_the_package():
    """torch.load only with weights_only=True; np.load/np.save never with pickles; no pickle module."""
    package = Path(labelaudit.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert len(sources) > 20
    loads = 0
    for source in sources:
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib") for n in names), source
            if isinstance(node, ast.Attribute) and node.attr in ("read_pickle", "to_pickle"):
                raise AssertionError(f"{source}: pandas pickle I/O")
        for call in _calls(tree, "torch", "load"):
            loads += 1
            keywords = {k.arg: k.value for k in call.keywords}
            assert isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True, \
                f"{source}:{call.lineno}: torch.load without weights_only=True"
        for func in ("load", "save"):
            for call in _calls(tree, "np", func):
                keywords = {k.arg: k.value for k in call.keywords}
                assert isinstance(keywords.get("allow_pickle"), ast.Constant) and \
                    keywords["allow_pickle"].value is False, f"{source}:{call.lineno}: np.{func} may pickle"
    assert loads >= 2  # model.pt and checkpoint.pt are read
