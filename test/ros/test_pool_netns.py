"""Two "hosts" (network namespaces joined by a veth pair, bench/netem's EmulatedLink; DDS over
UDP only): a far server on the server host, a near server, two edge nodes and their cameras
on the robot host. The robots are served by the far server (it has far more room); the link
drops: each robot is served by the near server within 1 s without outputs, with no fallback.
The drop is the server host's end of the veth set down (`ip link set ... down`). Needs root
and iproute2 (skipped otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from harness import child_env
from link import EmulatedLink

from support.procs import stop
from support.ros_nodes import node_args

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "tc")),
    reason="network namespaces need root and iproute2")]
ROBOTS = ("r1", "r2")
OBSERVER = Path(__file__).resolve().parents[1] / "support" / "pool_observer.py"


def start(link: EmulatedLink, side: str, argv: list[str], env: dict, log: Path
          ) -> subprocess.Popen:
    return subprocess.Popen(link.command(side, [sys.executable, *argv]), env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def server(model_dir: str, server_id: str, capacity: float) -> list[str]:
    return node_args("mtl_split_server", model=model_dir, device="cpu", server_id=server_id,
                     capacity_fps=capacity, pool_drop_tolerance=0.5, max_detections=5,
                     pool_new_robot_fps=10.0)  # the cameras' rate (docs/BENCHMARKS.md)


def read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())["robots"]
    except (OSError, ValueError, KeyError):
        return {}


def wait_state(path: Path, predicate, timeout: float, procs) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = read_state(path)
        if state and predicate(state):
            return state
        for p in procs:
            assert p.poll() is None, f"process died:\n{stop(p)[-3000:]}"
        time.sleep(0.2)
    brief = {r: {k: v for k, v in s.items() if k != "arrivals"} for r, s in state.items()}
    raise AssertionError(f"timed out; last state: {brief}")


def test_the_far_hosts_link_drops_and_the_robots_move_to_the_near_server(model_dir, tmp_path):
    env = child_env(int(os.environ.get("ROS_DOMAIN_ID", "0")))
    state_file = tmp_path / "state.json"
    procs: list[subprocess.Popen] = []
    with EmulatedLink() as link:
        try:
            # The robots join the far server (the only one yet) and stay on it while the link
            # is up: the near one has 1/20 of its room. It starts once they are served, so a
            # robot that heard the near one first cannot join it (the far one's announcements
            # cross the emulated link later at start, and a robot leaves a healthy server only
            # for a clearly less loaded one).
            procs.append(start(link, "server", server(model_dir, "far", 1200.0), env,
                               tmp_path / "far.log"))
            for r in ROBOTS:
                procs.append(start(link, "robot", [
                    *node_args("mtl_split_edge", model=model_dir, device="cpu", pool=True,
                               diagnostics_period=0.25), "-r", f"__ns:=/{r}"], env,
                    tmp_path / f"{r}.log"))
            procs.append(start(link, "robot", [str(OBSERVER), "--robots", ",".join(ROBOTS),
                                               "--out", str(state_file)], env,
                               tmp_path / "observer.log"))
            wait_state(state_file, lambda s: all(
                s[r]["pool_server"] == "far" and s[r]["link_mode"] == "remote"
                and s[r]["arrivals"] for r in ROBOTS), 120, procs)
            procs.append(start(link, "robot", server(model_dir, "near", 60.0), env,
                               tmp_path / "near.log"))
            # Both servers known to every robot (the near one is the standby), still on far.
            state = wait_state(state_file, lambda s: all(
                str(s[r]["pool_servers_known"]) == "2" and s[r]["pool_server"] == "far"
                for r in ROBOTS), 60, procs)
            time.sleep(2.0)  # served by the far server for a while
            fallbacks = {r: state[r]["fallbacks"] for r in ROBOTS}
            subprocess.run(["ip", "-n", link.ns["server"], "link", "set", link.dev["server"],
                            "down"], check=True)
            dropped = time.monotonic()
            state = wait_state(state_file, lambda s: all(
                s[r]["pool_server"] == "near" for r in ROBOTS), 10, procs)
            time.sleep(5.0)
            state = read_state(state_file)
            for r in ROBOTS:
                arrivals = [t for t in state[r]["arrivals"] if t >= dropped - 2.0]
                blind = float(max(np.diff([dropped - 2.0, *arrivals, time.monotonic()])))
                print(f"{r}: {blind:.2f} s without outputs; {state[r]['pool_last_event']}")
                assert blind <= 1.0, (r, blind, state[r]["pool_last_event"])
                assert state[r]["pool_server"] == "near" and state[r]["link_mode"] == "remote"
                assert state[r]["fallbacks"] == fallbacks[r], state[r]["pool_last_event"]
        finally:
            logs = [stop(p) for p in procs]
    for log in logs:
        assert "Traceback" not in log, log[-3000:]
