"""Starting node executables and ending process groups, also ones that ignore SIGINT."""

import sys
import time

from mtl_split_tools.node_processes import (
    cpu_seconds,
    node_command,
    node_executable,
    start,
    stop_all,
)


def test_node_command_takes_parameters_as_a_dict_or_raw_ros_args():
    argv = node_command("edge_node", {"device": "cpu", "zstd_level": 3})
    assert argv[0] == sys.executable and argv[1] == str(node_executable("edge_node"))
    assert argv[2:] == ["--ros-args", "-p", "device:=cpu", "-p", "zstd_level:=3"]
    assert node_command("server_node", ["-r", "a:=b"])[-2:] == ["-r", "a:=b"]
    assert node_executable("edge_node").exists()  # the installed executable


def test_stop_all_interrupts_then_kills_what_ignores_sigint(tmp_path):
    polite = start([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "a.log")
    stubborn = start([sys.executable, "-c",
                      "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                      "print('ready', flush=True); time.sleep(60)"], tmp_path / "b.log")
    deadline = time.time() + 10
    while "ready" not in (tmp_path / "b.log").read_text() and time.time() < deadline:
        time.sleep(0.05)
    t0 = time.time()
    stop_all([polite, stubborn], timeout=1.0)
    assert polite.returncode != 0 and stubborn.returncode == -9  # SIGKILL
    assert time.time() - t0 < 5


def test_cpu_seconds_counts_a_busy_process(tmp_path):
    busy = start([sys.executable, "-c", "while True: pass"], tmp_path / "busy.log")
    try:
        first = cpu_seconds(busy.pid)
        time.sleep(1.0)
        assert cpu_seconds(busy.pid) - first > 0.2  # it spins (on a shared 2-core machine)
    finally:
        stop_all([busy], timeout=5.0)
