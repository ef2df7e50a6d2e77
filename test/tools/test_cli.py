"""The installed `mtl-split` command (scripts/mtl-split -> mtl_split_tools.cli): every command
listed, the ROS tools registered, and gen-data's worker processes finishing (issue 11 item 8)."""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from mtl_split_tools.cli import COMMANDS, TOOL_COMMANDS

ROOT = Path(__file__).resolve().parents[2]


def _installed_command() -> str:
    """The command colcon installed (on PATH after `source install/setup.bash`)."""
    exe = shutil.which("mtl-split") or ROOT / "install" / "mtl_split" / "bin" / "mtl-split"
    if not Path(exe).exists():
        pytest.fail("the `mtl-split` command is not installed: run `make setup` first")
    return str(exe)


def _run(*args, timeout=120):
    # Own process group: on a timeout every worker the command started is ended too.
    proc = subprocess.Popen([_installed_command(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"`mtl-split {' '.join(args)}` did not finish within {timeout} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_installed_help_lists_every_command_with_the_ros_tools():
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    assert set(TOOL_COMMANDS) == {"replay", "record", "process", "fleet"}
    for name in COMMANDS:
        assert f"    {name} " in r.stdout, name


def test_installed_unknown_command_is_one_line_and_exit_2():
    r = _run("pack")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_every_tool_module_provides_the_protocol():
    import importlib
    for name, command in TOOL_COMMANDS.items():
        module = importlib.import_module(command.module)
        assert callable(module.add_arguments) and callable(module.run), name


def test_installed_gen_data_with_two_workers_finishes(tmp_path):
    # Spawned workers re-import the installed script; without its __main__ guard each one ran
    # the command again and the pool respawned them forever.
    out = tmp_path / "ds"
    r = _run("gen-data", "--workers", "2", "--frames", "4", "--frames-per-scene", "2",
             "--out", str(out), timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    index = json.loads((out / "index.json").read_text())
    names = sorted(image["file_name"] for image in index["images"])
    assert names == ["s00000_000", "s00000_001", "s00001_000", "s00001_001"]
    for folder, suffix in (("rgb", ".jpg"), ("depth", ".png"), ("seg", ".png")):
        assert sorted(p.stem for p in (out / folder).glob(f"*{suffix}")) == names, folder
