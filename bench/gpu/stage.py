"""Copy the run-time closure of some installed distributions into a staging folder.

    python stage.py STAGE DIST...   (run with the interpreter of the venv that has them)

Each distribution's RECORD names its files: those in site-packages go to STAGE/site-packages,
those a wheel put beside it (``lib/*.so``, ``share/ament_index``, ...) to STAGE/lib, STAGE/share.
Dependencies are followed through the distributions' Requires-Dist (markers evaluated here),
except into build tools (code generators, CMake helpers, linters) and what the GPU machine has
(numpy). Shared libraries are stripped, and the copies a wheel ships for each soname
(``libx.so``, ``libx.so.3.2``: wheels cannot hold symlinks) become symlinks.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement  # pip is in every venv

# Needed to build messages, not to run nodes; or present on the GPU machine (numpy).
SKIP = re.compile(r"^(numpy|setuptools|empy|ros-wheels-bootstrapper|"
                  r"ros-ament-cmake.*|ros-rosidl-(adapter|cli|cmake|pycommon|generator-(c|cpp|type-description))|"
                  r"ros-rmw-implementation-cmake)$")


def closure(roots: list[str]) -> list[metadata.Distribution]:
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen or SKIP.match(name):
            continue
        dist = seen[name] = metadata.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def strip_and_link(stage: Path) -> None:
    """Strip debug symbols from shared libraries; identical files in one folder: keep the
    first (by name), the others become symlinks to it."""
    libs = sorted(p for p in stage.rglob("*.so*") if p.is_file() and not p.is_symlink())
    if libs and shutil.which("strip"):
        subprocess.run(["strip", "--strip-unneeded", *map(str, libs)], check=False,
                       stderr=subprocess.DEVNULL)
    first: dict[tuple[Path, str], Path] = {}
    for lib in libs:
        key = (lib.parent, hashlib.sha256(lib.read_bytes()).hexdigest())
        if key in first:
            lib.unlink()
            os.symlink(first[key].name, lib)
        else:
            first[key] = lib


def main() -> int:
    stage, roots = Path(sys.argv[1]), sys.argv[2:]
    prefix = Path(sys.prefix).resolve()
    sizes = []
    for dist in closure(roots):
        site = Path(dist.locate_file("")).resolve()
        total = 0
        for f in dist.files or []:
            src = (site / f).resolve()
            if "__pycache__" in src.parts or not src.is_file():
                continue
            if src.is_relative_to(site):
                dest = stage / "site-packages" / src.relative_to(site)
            elif src.is_relative_to(prefix):
                dest = stage / src.relative_to(prefix)
            else:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            total += src.stat().st_size
        sizes.append((total, dist.metadata["Name"]))
    strip_and_link(stage)
    sizes.sort(reverse=True)
    print(f"staged {len(sizes)} distributions, {sum(s for s, _ in sizes) / 2**20:.1f} MiB; "
          "before stripping; largest: " + ", ".join(f"{n} {s / 2**20:.1f}" for s, n in sizes[:8]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
