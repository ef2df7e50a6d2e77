"""`make setup` stops with a message that names what is missing and how to fix it."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup(tmp_path, **env):
    return subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "VENV": str(tmp_path / "venv"), **env})


def test_missing_python_is_named(tmp_path):
    result = _setup(tmp_path, PYTHON="python3.11-does-not-exist")
    assert result.returncode != 0
    assert "python3.11-does-not-exist not found" in result.stderr
    assert "PYTHON=" in result.stderr  # says how to point it at another interpreter
    assert not (tmp_path / "venv").exists()


def test_wrong_python_version_is_named(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\n[ \"$1\" = -V ] && echo 'Python 3.9.2' && exit 0\nexit 1\n")
    fake.chmod(0o755)
    result = _setup(tmp_path, PYTHON=str(fake))
    assert result.returncode != 0
    assert "Python 3.9.2" in result.stderr and "need Python 3.11" in result.stderr
