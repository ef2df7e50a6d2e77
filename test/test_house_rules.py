"""House rules a newcomer can run: `ruff check` (ruff.toml) over the whole tree, `mypy`
(mypy.ini) on the core and the ROS adapter, and docs that name only commands that exist."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Everything with Python in it; ruff.toml adds the executables without a .py suffix.
LINTED = ["mtl_split_core", "mtl_split_ros", "mtl_split_edge", "mtl_split_server",
          "mtl_split_tools", "bench", "launch", "nodes", "scripts", "test"]


def _tool(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_ruff_is_clean_on_the_whole_tree():
    r = _tool("ruff", "check", "--no-fix", "--output-format", "concise", *LINTED)
    assert r.returncode == 0, f"`ruff check` found problems:\n{r.stdout}{r.stderr}"


def test_mypy_is_clean_on_the_core_and_the_ros_adapter():
    r = _tool("mypy")  # files and strictness from mypy.ini
    assert r.returncode == 0, f"`mypy` found problems:\n{r.stdout}{r.stderr}"


def test_text_names_only_commands_that_exist():
    from mtl_split_tools.cli import COMMANDS
    mention = re.compile(r"mtl-split ([a-z][a-z0-9-]*)")
    files = [p for d in LINTED + ["docs"] for p in (ROOT / d).rglob("*") if p.is_file()
             and (p.suffix in (".py", ".md", ".sh", ".yaml") or p.parent.name in
                  ("nodes", "scripts"))]
    files += [ROOT / "README.md", ROOT / "Makefile"]
    wrong = [f"{p.relative_to(ROOT)}: mtl-split {m}" for p in files
             for m in mention.findall(p.read_text(errors="replace")) if m not in COMMANDS]
    assert not wrong, "commands that do not exist:\n" + "\n".join(wrong)
