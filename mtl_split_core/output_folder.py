"""Write a folder all at once: work in a hidden sibling, rename it into place when done.

A command that fails or is interrupted (Ctrl-C, SIGTERM) leaves nothing behind, and readers
never see a half-written data set or export. ``check_can_create`` tells before any work whether
an output can be made at all.
"""

from __future__ import annotations

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
