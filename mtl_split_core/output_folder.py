"""Write a folder (or a file) all at once: work in a hidden sibling, rename it into place when
done.

A command that fails or is interrupted (Ctrl-C, SIGTERM) leaves nothing behind, and readers
never see a half-written data set or export. ``check_can_create`` tells before any work whether
an output can be made at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mtl_split_core.errors import InputError


def check_can_create(path: str | Path) -> None:
    """Raise InputError unless a file or folder can be made at ``path`` (checked before a
    command starts work, so a bad output path fails at once and leaves nothing behind)."""
    path = Path(path)
    existing = path if path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    try:  # a real write: os.access says yes to root even on a read-only file system
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise InputError(f"{path}: cannot write there ({existing}: "
                         f"{err.strerror or err})") from None


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it becomes ``path`` (which must not
    exist or be an empty folder: InputError before any work otherwise), on any exception it
    is removed, with the parent folders created for it."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{path}: exists and is not an empty folder; choose a new one")
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield work
        if path.exists():
            path.rmdir()
        work.rename(path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        for folder in made:  # and the parents made for it
            try:
                folder.rmdir()
            except OSError:
                break
        raise


@contextmanager
def replacing_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out`` that becomes ``out`` on success (an old ``out``
    replaced) and is removed on any failure or interrupt."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """``path`` replaced whole: a kill leaves the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
