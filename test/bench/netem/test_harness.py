"""What both link benchmarks share: the nodes' environment, camera/probe commands, start-up."""

import subprocess
import sys
import time

import pytest
from harness import camera_command, child_env, num, probe_command, wait_ready


def test_every_byte_goes_over_udp_in_the_given_domain(monkeypatch):
    monkeypatch.setenv("ROS_STATIC_PEERS", "10.0.0.9")
    env = child_env(81)
    assert env["FASTDDS_BUILTIN_TRANSPORTS"] == "UDPv4"  # no shared memory past the link
    assert env["ROS_DOMAIN_ID"] == "81"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert "ROS_STATIC_PEERS" not in env


def test_camera_and_probe_commands(tmp_path):
    cam = camera_command(tmp_path / "f.npz", 30.0, "best_effort")
    assert cam[-4:] == ["--rate", "30.0", "--qos", "best_effort"]
    assert "--stamps-out" not in cam
    assert camera_command(tmp_path / "f.npz", 10, "reliable", tmp_path / "s.json")[-2:] == [
        "--stamps-out", str(tmp_path / "s.json")]
    assert "--detections-only" not in probe_command(tmp_path / "p.json", tmp_path / "r")
    assert probe_command(tmp_path / "p.json", tmp_path / "r", True)[-1] == "--detections-only"


def test_wait_ready_times_out_and_notices_a_dead_process(tmp_path):
    ready = tmp_path / "ready"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        t0 = time.monotonic()
        assert wait_ready(ready, [alive], 0.5, "x", tmp_path) is False
        assert time.monotonic() - t0 < 5
        ready.write_text("1")
        assert wait_ready(ready, [alive], 5, "x", tmp_path) is True
    finally:
        alive.kill()
        alive.wait()
    ready.unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with pytest.raises(RuntimeError, match="x: a process exited"):
        wait_ready(ready, [dead], 5, "x", tmp_path)


def test_diagnostics_values_as_numbers():
    assert num("12.5") == 12.5
    assert num(None) is None and num("n/a") is None
