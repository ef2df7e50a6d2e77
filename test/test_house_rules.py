"""Docs name only commands that exist. (ruff and mypy are not tests: `make lint`, a CI step of
its own, runs them.)"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Folders with text that may name a command (the Makefile's LINTED, the folders with Python).
TEXT = ["mtl_split_core", "mtl_split_ros", "mtl_split_edge", "mtl_split_server",
        "mtl_split_tools", "bench", "launch", "nodes", "scripts", "test"]


def test_text_names_only_commands_that_exist():
    from mtl_split_tools.cli import COMMANDS
    mention = re.compile(r"mtl-split ([a-z][a-z0-9-]*)")
    files = [p for d in TEXT + ["docs"] for p in (ROOT / d).rglob("*") if p.is_file()
             and (p.suffix in (".py", ".md", ".sh", ".yaml") or p.parent.name in
                  ("nodes", "scripts"))]
    files += [ROOT / "README.md", ROOT / "Makefile"]
    wrong = [f"{p.relative_to(ROOT)}: mtl-split {m}" for p in files
             for m in mention.findall(p.read_text(errors="replace")) if m not in COMMANDS]
    assert not wrong, "commands that do not exist:\n" + "\n".join(wrong)
