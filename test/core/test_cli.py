"""The `mtl-split` command end to end: help, gen-data (+pack), eval on the default model."""

import shutil
import subprocess
import sys

import pytest


def _run(*args, timeout=300):
    exe = shutil.which("mtl-split")
    cmd = [exe] if exe else [sys.executable, "-m", "mtl_split_core.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_subcommands():
    r = _run("--help")
    assert r.returncode == 0
    for sub in ("gen-data", "train", "eval"):
        assert sub in r.stdout


def test_unknown_subcommand_fails():
    assert _run("fly").returncode != 0


@pytest.mark.slow
def test_gen_data_then_eval_default_model(tmp_path):
    r = _run("gen-data", "--frames", "6", "--size", "320x240", "--out", str(tmp_path / "ds"),
             "--frames-per-scene", "2", "--workers", "1", "--pack", str(tmp_path / "sh"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "ds" / "index.json").exists() and list((tmp_path / "sh").glob("*.npz"))
    r = _run("eval", "--data", str(tmp_path / "ds"), "--split-set", "train", "--codec",
             "q4-zstd/1", "--device", "cpu", "--out", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "q4-zstd/1" in r.stdout and (tmp_path / "r.json").exists()
