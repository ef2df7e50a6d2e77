"""The core's dispatcher: the command table, help, one-line errors with exit status 2."""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mtl_split_core
from mtl_split_core.cli.main import COMMANDS, PROG, Command, main

CORE = Path(mtl_split_core.__file__).parent


def _module_run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "mtl_split_core.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_core_command_and_no_ros_tool():
    r = _module_run("--help")
    assert r.returncode == 0, r.stderr
    for name in COMMANDS:
        assert f"    {name} " in r.stdout, name
    assert "replay" not in r.stdout and "record" not in r.stdout


@pytest.mark.parametrize("argv", [[], ["fly"], ["--frobnicate"], ["replay", "x.bag"]])
def test_missing_or_unknown_command_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mtl-split: error:"), err


@pytest.mark.parametrize("argv", [
    ["gen-data", "--out", "x", "--size", "320by240"],
    ["gen-data", "--out", "x", "--frames", "0"],
    ["gen-data"],                                   # --out missing
    ["plan", "--max-drop", "-1"],
    ["eval", "--data", "x", "--codec", "q3-zstd/1"],
    ["train", "--data", "x", "--out", "y", "--size", "0x240"],
    ["train-eb", "--data", "x", "--out", "y", "--targets", "800,300"],
    ["train-eb", "--data", "x", "--out", "y", "--codec", "eb-9/1"],
    ["profile", "--out", "p.json", "--temporal-codecs", "t30-c0-q4-zstd/1"],
    ["profile", "--out", "p.json", "--temporal-codecs", ","],
])
def test_bad_arguments_are_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"mtl-split {argv[0]}: error:"), err


def test_unusable_input_is_one_line_without_traceback_and_exit_2(tmp_path, capsys):
    # Reaches the library (the link parser), which raises the one InputError class; as a
    # process once (what a user runs), then in this process (the same dispatcher).
    r = _module_run("plan", "--link", "fast", "--out", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "mtl-split plan: error: link bandwidth 'fast': expected e.g. 20mbit, 500kbit"]
    assert main(["eval", "--model", str(tmp_path / "missing"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "parameter 'model'" in err, err


def test_command_help_exits_0_with_the_commands_options():
    r = _module_run("gen-data", "--help")
    assert r.returncode == 0 and "--workers" in r.stdout and "--frames-per-scene" in r.stdout


def test_every_core_command_module_provides_the_protocol():
    import importlib
    for name, command in COMMANDS.items():
        assert command.module.startswith("mtl_split_core.cli."), name
        module = importlib.import_module(command.module)
        assert callable(module.add_arguments) and callable(module.run), name


def test_core_names_no_ros_tool_module_in_code():
    """The ROS-free core must not reach mtl_split_tools through import strings (docstrings
    may say where the tools are registered)."""
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and "mtl_split_tools" in node.value and id(node) not in docstrings:
                offenders.append(f"{path.relative_to(CORE.parent)}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize("argv", [
    ["gen-data", "--frames", "2"], ["train", "--data", "x"], ["plan"],
    ["profile"], ["eval", "--data", "x"],
])
def test_an_unwritable_out_is_one_line_exit_2_before_any_work(tmp_path, capsys, argv):
    (tmp_path / "file").write_text("x")
    for out, reason in ((tmp_path / "file" / "sub", "cannot write there"),
                        (tmp_path / "file" if argv[0] in ("gen-data", "train", "plan")
                         else tmp_path, "folder")):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--out", str(out)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"argument --out: {out}" in err and reason in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_a_running_command_with_one_line_and_exit_0(tmp_path, sig):
    proc = subprocess.Popen([sys.executable, "-m", "mtl_split_core.cli", "gen-data",
                             "--frames", "400", "--workers", "1", "--size", "160x120",
                             "--out", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        # Rendering has started once the progress bar shows a frame.
        deadline = time.monotonic() + 120
        seen = ""
        while "frame" not in seen and time.monotonic() < deadline and proc.poll() is None:
            seen += proc.stderr.read(1)
        assert proc.poll() is None, seen
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "mtl-split gen-data: interrupted" in err, err
    assert list(tmp_path.iterdir()) == [], "an interrupted command leaves nothing half-written"


def test_a_signal_during_an_import_interrupts_once_the_import_is_done(tmp_path, monkeypatch,
                                                                       capsys):
    """A compiled module's initialisation can swallow an exception raised inside it (numpy's
    Cython random module did), so the interrupt waits for the import to end, then comes."""
    (tmp_path / "slow_import.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "end = time.monotonic() + 0.2\n"
        "while time.monotonic() < end:  # still importing when the handler runs\n"
        "    pass\n"
        "COMPLETE = True\n")
    (tmp_path / "cmd_importing.py").write_text(
        "import time\n"
        "def add_arguments(parser):\n"
        "    pass\n"
        "def run(args):\n"
        "    import slow_import\n"
        "    assert slow_import.COMPLETE\n"
        "    time.sleep(10)  # the retried interrupt ends this\n"
        "    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    handlers = [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)]
    started = time.monotonic()
    assert main(["job"], {"job": Command("cmd_importing", "imports")}) == 0
    assert time.monotonic() - started < 5
    assert capsys.readouterr().err == f"{PROG} job: interrupted\n"
    assert sys.modules["slow_import"].COMPLETE
    assert [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)] \
        == handlers
