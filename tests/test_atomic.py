"""The output folder holds the previous complete set of files or the new one, never a mix."""
import os

import pytest

from labelaudit.atomic import recover_folder, replace_folder

NAMES = ("a.txt", "b.txt", "run.json")  # run.json last: the marker


def _write(stage, tag, names=NAMES):
    for name in names:
        (stage / name).write_text(tag)


def _contents(folder):
    return {p.name: p.read_text() for p in folder.iterdir() if p.is_file()}


def test_new_folder_then_replace_keeps_foreign_files_and_drops_asked(tmp_path):
    out = tmp_path / "audit"
    with replace_folder(out, replaces=NAMES) as stage:
        _write(stage, "v1")
    assert _contents(out) == {n: "v1" for n in NAMES}
    (out / "notes.md").write_text("mine")
    (out / "checkpoint.pt").write_text("ckpt")
    with replace_folder(out, replaces=NAMES, drop=("checkpoint.pt",)) as stage:
        _write(stage, "v2", names=("a.txt", "run.json"))  # b.txt is not part of the new set
    assert _contents(out) == {"a.txt": "v2", "run.json": "v2", "notes.md": "mine"}
    assert [p.name for p in tmp_path.iterdir()] == ["audit"]  # no staging or old folders left


def test_error_while_writing_leaves_the_old_set(tmp_path):
    out = tmp_path / "audit"
    with replace_folder(out, replaces=NAMES) as stage:
        _write(stage, "v1")
    with pytest.raises(RuntimeError):
        with replace_folder(out, replaces=NAMES) as stage:
            (stage / "a.txt").write_text("v2")
            raise RuntimeError("killed mid-write")
    assert _contents(out) == {n: "v1" for n in NAMES}
    assert [p.name for p in tmp_path.iterdir()] == ["audit"]


def test_recover_after_a_kill_between_the_two_renames(tmp_path):
    out = tmp_path / "audit"
    with replace_folder(out, replaces=NAMES) as stage:
        _write(stage, "v1")
    # what a kill between `rename(out, old)` and `rename(stage, out)` leaves behind
    os.rename(out, tmp_path / ".audit.old-1234abcd")
    half = tmp_path / ".audit.new-5678ef90"
    half.mkdir()
    (half / "a.txt").write_text("v2")
    recover_folder(out)
    assert _contents(out) == {n: "v1" for n in NAMES}
    assert [p.name for p in tmp_path.iterdir()] == ["audit"]


def test_working_directory_is_filled_file_by_file(tmp_path, monkeypatch):
    out = tmp_path / "audit"
    with replace_folder(out, replaces=NAMES) as stage:
        _write(stage, "v1")
    real_rename = os.rename

    def no_folder_rename(src, dst):  # what a mount point or the working directory does
        if os.fspath(src) == os.fspath(out):
            raise OSError(16, "Device or resource busy")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", no_folder_rename)
    with replace_folder(out, replaces=NAMES) as stage:
        _write(stage, "v2", names=("a.txt", "run.json"))
    assert _contents(out) == {"a.txt": "v2", "run.json": "v2"}
