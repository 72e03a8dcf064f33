"""Atomic writes: a file is written under a temporary name in the same folder, fsynced and renamed
into place; a folder of files is written as a staging folder beside it and swapped in.

A crash never leaves a half-written file under its final name, nor a folder mixing an old and a new
set of files (os.replace / os.rename are atomic on POSIX and Windows within one file system)."""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterable


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` to fill a temporary file, then move it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    """``path`` holds exactly ``text`` (UTF-8), or keeps what it held before."""
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _sibling(folder: Path, kind: str) -> Path:
    return folder.with_name(f".{folder.name}.{kind}-{uuid.uuid4().hex[:8]}")


def recover_folder(folder: Path) -> None:
    """Finish what an interrupted :func:`replace_folder` left beside ``folder``.

    A kill between its two renames leaves no ``folder`` but the previous one under an ``.old-``
    name: that one is put back. Staging folders (``.new-``) and leftover ``.old-`` folders of a
    finished swap are deleted. Afterwards ``folder`` is one complete set of files, or absent.
    """
    folder = Path(folder)
    if not folder.parent.is_dir():
        return
    name = glob.escape(folder.name)
    olds = sorted(folder.parent.glob(f".{name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not folder.exists():
        os.rename(olds.pop(), folder)
    for leftover in olds + list(folder.parent.glob(f".{name}.new-*")):
        shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def replace_folder(folder: Path, *, replaces: Iterable[str], drop: Iterable[str] = ()):
    """Yield an empty staging folder beside ``folder``; when the block ends without an error, the
    staging folder becomes ``folder`` in one rename, so ``folder`` always holds either its previous
    complete set of files or the new one, never a mix.

    ``replaces``: the names the new set consists of. Any other entry of the old ``folder`` (a
    user's own file, a checkpoint) is carried over as a hard link (a copy where links do not
    work), except the names in ``drop``. When ``folder`` cannot be renamed (it is the working
    directory or a mount point), the files are moved in one by one instead, the last name of
    ``replaces`` last (run.json: its presence marks a complete set). On an error the staging
    folder is deleted and ``folder`` is untouched.
    """
    folder, replaces = Path(folder), list(replaces)
    recover_folder(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = _sibling(folder, "new")
    stage.mkdir()
    try:
        yield stage
        if not folder.exists():
            os.rename(stage, folder)
            return
        skip = {*replaces, *drop}
        for entry in folder.iterdir():
            if entry.name not in skip and not (stage / entry.name).exists():
                _link_tree(entry, stage / entry.name)
        old = _sibling(folder, "old")
        try:
            os.rename(folder, old)
        except OSError:  # cannot move the folder itself: the marker goes first and comes back last
            marker = replaces[-1]
            _remove(folder / marker)
            for name in replaces[:-1]:
                if (stage / name).exists():
                    os.replace(stage / name, folder / name)
                else:
                    _remove(folder / name)  # not part of the new set
            for name in drop:
                _remove(folder / name)
            os.replace(stage / marker, folder / marker)
            return
        os.rename(stage, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def link_or_copy(src, dst) -> None:
    """A hard link (no bytes copied); a copy where the file system has none."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _link_tree(src: Path, dst: Path) -> None:
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy)
    else:
        link_or_copy(src, dst)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
