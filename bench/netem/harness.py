"""What the link benchmarks (run.py, trace.py) share: the camera and probe commands, the
processes' environment, starting them on their side of the link, waiting for the first output,
the cached bench frames and the results' header (machine, model, host load)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from frames import render_frames  # noqa: E402
from link import EmulatedLink  # noqa: E402

from mtl_split_tools.node_processes import start  # noqa: E402


def camera_command(frames: Path, rate: float, qos: str,
                   stamps_out: Path | None = None) -> list[str]:
    """The bench camera (camera.py) publishing ``frames`` at ``rate`` with ``qos``;
    ``stamps_out``: where it writes which frame went out with which stamp."""
    argv = [sys.executable, str(HERE / "camera.py"), str(frames), "--rate", str(rate),
            "--qos", qos]
    return argv + (["--stamps-out", str(stamps_out)] if stamps_out else [])


def probe_command(out: Path, ready: Path, detections_only: bool = False) -> list[str]:
    """The probe (probe.py); ``detections_only``: no segmentation/depth subscription, and
    every detection kept (for accuracy)."""
    return [sys.executable, str(HERE / "probe.py"), "--out", str(out), "--ready", str(ready),
            *(["--detections-only"] if detections_only else [])]


def child_env(domain_id: int) -> dict:
    env = dict(os.environ)
    env.update({
        "FASTDDS_BUILTIN_TRANSPORTS": "UDPv4",     # shared memory would bypass the link
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",  # discover across the veth
        "ROS_DOMAIN_ID": str(domain_id),
        "OMP_NUM_THREADS": "1",                     # one core per side
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("ROS_STATIC_PEERS", None)
    return env


def start_sides(link: EmulatedLink, sides: dict[str, list], env: dict, log_dir: Path,
                pin: bool, procs: list[subprocess.Popen]) -> None:
    """Start every (name, argv) of ``sides`` in its side's namespace (server side first), with
    ``pin`` the robot on CPU 0 and the server on CPU 1; logs ``<side>_<name>.log``. Appends to
    ``procs`` as it goes, so a caller's ``finally`` ends what started before an error."""
    cpus = {"robot": "0", "server": "1"} if pin else {"robot": None, "server": None}
    for side in ("server", "robot"):
        for name, argv in sides.get(side, []):
            procs.append(start(link.command(side, argv, cpus[side]),
                               log_dir / f"{side}_{name}.log", env))


def wait_ready(ready: Path, procs: list[subprocess.Popen], timeout: float, what: str,
               log_dir: Path) -> bool:
    """Wait until the probe wrote ``ready`` (first output); False after ``timeout`` s.
    RuntimeError when a process exits meanwhile."""
    deadline = time.time() + timeout
    while not ready.exists() and time.time() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{what}: a process exited; logs in {log_dir}")
        time.sleep(0.2)
    return ready.exists()


def cached_frames(folder: Path, count: int, width: int, height: int, noise: float) -> Path:
    """The bench frames (frames.render_frames) in ``folder``, rendered on first use."""
    path = folder / f"frames_{width}x{height}_n{noise:g}_{count}.npz"
    if not path.exists():
        print(f"rendering {count} frames at {width}x{height} -> {path}", flush=True)
        render_frames(path, count, width, height, noise=noise)
    return path


def model_label(model: str) -> str:
    """'name (fingerprint)' of the model the nodes will load, for the results' header."""
    from mtl_split_core.model.card import read_card
    from mtl_split_core.runtime.model_files import resolve_model_path
    card = read_card(resolve_model_path(model or None))
    return f"{card.get('name', '?')} ({card['fingerprint']})"


def machine() -> str:
    return (f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, "
            f"kernel {platform.release()}")


def today() -> str:
    return datetime.date.today().isoformat()


def num(v) -> float | None:
    """A /diagnostics value (a string) as a number; None when it is not one."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
