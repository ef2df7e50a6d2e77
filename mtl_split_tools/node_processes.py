"""Start this package's node executables as OS processes and end them all, also on errors."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def node_executable(name: str) -> Path:
    """``lib/mtl_split/<name>`` of the first colcon prefix (``install`` when none is sourced)."""
    prefix = os.environ.get("COLCON_PREFIX_PATH", "install").split(":")[0]
    return Path(prefix) / "mtl_split" / "lib" / "mtl_split" / name


def node_command(name: str, ros_args: list[str] | dict | None = None) -> list[str]:
    """argv that runs node ``name`` with this Python; ``ros_args`` as a list (``-p``, ``-r``
    ...) or a dict of parameters (``{"device": "cpu"}`` -> ``-p device:=cpu``)."""
    if isinstance(ros_args, dict):
        ros_args = [a for k, v in ros_args.items() for a in ("-p", f"{k}:={v}")]
    return [sys.executable, str(node_executable(name)), "--ros-args", *(ros_args or [])]


def start(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """Run ``argv`` in its own process group with stdout and stderr to ``log``."""
    return subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_all(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """SIGINT every process group (nodes shut down cleanly), SIGKILL what is left after
    ``timeout`` seconds."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGINT)
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
