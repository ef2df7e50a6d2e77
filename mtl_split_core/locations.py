"""Where the package's data files are, from a source checkout or an install, without ROS.

Source: ``<repo>/<source_subdir>`` (``--symlink-install`` links resolve to the repo).
Installed: ``<prefix>/share/mtl_split/<share_subdir>``, where the Python package sits in
``<prefix>/lib/pythonX.Y/site-packages`` or (Debian/Ubuntu) ``<prefix>/local/lib/...``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).absolute().parent


def data_dirs(source_subdir: str, share_subdir: str) -> list[Path]:
    """Candidate folders, most specific first (source tree, install prefixes, ament prefixes)."""
    dirs = [_PACKAGE.resolve().parent / source_subdir]
    for base in (_PACKAGE.parent, _PACKAGE.resolve().parent):
        for up in (2, 3):
            if len(base.parents) > up:
                dirs.append(base.parents[up] / "share" / "mtl_split" / share_subdir)
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "mtl_split" / share_subdir)
    return list(dict.fromkeys(dirs))
