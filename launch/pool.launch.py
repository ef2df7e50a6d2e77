"""Pool servers on this host: N server processes that announce themselves to the robots.

    ros2 launch mtl_split pool.launch.py servers:=2 devices:=cuda:0
    ros2 launch mtl_split pool.launch.py servers:=4 devices:=cuda:0,cuda:1
    ros2 launch mtl_split pool.launch.py servers:=auto devices:=cuda:0 capacity_file:=cap.json

Unlike fleet.launch.py no robot is named: each server announces itself on ``pool_topic`` with
its id (``<server_id_prefix>_<i>``, the prefix defaulting to this host's name, so ids stay
unique across hosts) and serves the robots that choose it (docs/POOL.md). Servers are dealt to
``devices`` in turn (servers:=4 devices:=cuda:0,cuda:1 -> two per GPU): one Python process
saturates near 340 frames/s while its GPU is far from busy, so several per GPU pay
(docs/BENCHMARKS.md).

``servers:=auto`` takes the count from ``capacity_file`` (JSON, measured with bench/fleet):
``{"process_fps": F, "device_fps": G}`` — F what one server process serves, G what one device
serves with enough processes. Each device then gets ceil(G / F) processes (1..8). With a
capacity file (auto or not) every server is given ``capacity_fps`` = min(F, G / processes on
its device), the figure its admission starts from.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description_sources import load_python_launch_file_as_module
from launch.substitutions import LaunchConfiguration

HERE = os.path.dirname(__file__)
common = load_python_launch_file_as_module(os.path.join(HERE, "common.py"))
server = load_python_launch_file_as_module(os.path.join(HERE, "server.launch.py"))

POOL_TOPIC = "/mtl_split/pool"  # = mtl_split_core.runtime.pool_announcement.POOL_TOPIC
MAX_SERVERS = 64
MAX_PER_DEVICE = 8
# Launch arguments that become parameters of every server of the same name.
PARAMETERS = ("model", "precision", "score_threshold", "max_batch", "batch_wait_ms",
              "auth_key_file", "backend", "onnx_dir", "engine_cache", "use_sim_time",
              "pool_period", "pool_headroom", "pool_max_robots")
DESCRIPTIONS = {
    "servers": "Number of server processes (1..64), or 'auto': from capacity_file (required).",
    "devices": "Comma-separated devices the servers are dealt to in turn (cuda:0,cuda:1; "
               "'' = the params file's device).",
    "capacity_file": "Measured capacity, JSON {\"process_fps\": F, \"device_fps\": G}: needed "
                     "by servers:=auto; sets each server's capacity_fps ('' = none: the "
                     "servers measure their own).",
    "server_id_prefix": "Server ids are <prefix>_<i>; unique per host ('' = this host's "
                        "name).",
    "pool_topic": f"Topic the servers announce on ('' = {POOL_TOPIC}).",
    "precision": "fp32 or fp16 (fp16 only on CUDA) ('' = params file).",
    "max_batch": "Most robots' frames run as one batch, 1..32 ('' = params file).",
    "batch_wait_ms": "Wait for more robots' frames once one is there, ms ('' = params file).",
    "pool_period": "Seconds between a server's announcements ('' = params file: 0.25).",
    "pool_headroom": "A server takes a new robot while load + its demand fits this share of "
                     "its capacity ('' = params file: 0.9).",
    "pool_max_robots": "Most robots per server ('' = params file: 64).",
}
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")


def id_prefix(text: str) -> str:
    """A server id prefix from ``text`` (a host name: 'gpu-host.lan' -> 'gpu_host')."""
    prefix = re.sub(r"[^A-Za-z0-9_]", "_", text.split(".")[0])[:48]
    if not prefix or not prefix[0].isalpha():
        prefix = f"s{prefix}"[:48]
    if not _TOKEN.fullmatch(prefix):
        raise RuntimeError(f"server_id_prefix:={text}: expected letters, digits and '_', a "
                           "letter first (at most 48)")
    return prefix


def read_capacity(path: str) -> tuple[float, float]:
    """(process_fps, device_fps) of a capacity file; RuntimeError says what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        values = (float(doc["process_fps"]), float(doc["device_fps"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RuntimeError(f"capacity_file:={path}: expected JSON with numbers 'process_fps' "
                           f"(one server process) and 'device_fps' (one device), measured "
                           f"with bench/fleet ({type(err).__name__}: {err})") from None
    if not all(math.isfinite(v) and 0 < v <= 1e5 for v in values):
        raise RuntimeError(f"capacity_file:={path}: process_fps and device_fps must be in "
                           "(0, 100000]")
    return values


def server_plan(servers: str, devices: list[str], capacity: tuple[float, float] | None,
                prefix: str) -> list[dict]:
    """One dict per server process: node name and the parameters that differ between them."""
    if servers == "auto":
        if capacity is None:
            raise RuntimeError("servers:=auto needs capacity_file:=FILE, JSON {\"process_fps\":"
                               " F, \"device_fps\": G} measured with bench/fleet (one server "
                               "process, and one device with several); or give servers:=N")
        per_device = min(max(math.ceil(capacity[1] / capacity[0]), 1), MAX_PER_DEVICE)
        placed = [d for d in (devices or [None]) for _ in range(per_device)]
    else:
        if not re.fullmatch(r"[0-9]{1,3}", servers) or not 1 <= int(servers) <= MAX_SERVERS:
            raise RuntimeError(f"servers:={servers or '(missing)'}: expected a count 1.."
                               f"{MAX_SERVERS} or 'auto'")
        placed = [(devices[i % len(devices)] if devices else None)
                  for i in range(int(servers))]
    if len(placed) > MAX_SERVERS:
        raise RuntimeError(f"{len(placed)} servers: at most {MAX_SERVERS} per host")
    plan = []
    for i, device in enumerate(placed):
        params: dict = {"server_id": f"{prefix}_{i}"}
        if device is not None:
            params["device"] = device
        if capacity is not None:
            sharing = placed.count(device)
            params["capacity_fps"] = round(min(capacity[0], capacity[1] / sharing), 1)
        plan.append({"name": f"mtl_split_server_{i}", "params": params})
    return plan


def pool_servers(context: LaunchContext) -> list:
    arg = lambda name: LaunchConfiguration(name).perform(context).strip()  # noqa: E731
    devices = [d.strip() for d in arg("devices").split(",") if d.strip()]
    capacity = read_capacity(arg("capacity_file")) if arg("capacity_file") else None
    prefix = id_prefix(arg("server_id_prefix") or socket.gethostname())
    topic = arg("pool_topic") or POOL_TOPIC
    if not re.fullmatch(r"(/[A-Za-z_][A-Za-z0-9_]*)+", topic):
        raise RuntimeError(f"pool_topic:={topic}: expected an absolute topic, e.g. {POOL_TOPIC}")
    overrides = common.given(context, PARAMETERS)
    nodes = []
    for entry in server_plan(arg("servers"), devices, capacity, prefix):
        params = {**overrides, **entry["params"], "pool_topic": topic}
        nodes.append(server.named_server(context, entry["name"], params))
    return nodes


def generate_launch_description():
    declared = [n for n in PARAMETERS if n in common.DESCRIPTIONS]
    return LaunchDescription([
        *common.dds_profile(),
        DeclareLaunchArgument("params_file", default_value=server.SHIPPED_PARAMS,
                              description="Server parameters file; replaces the shipped one."),
        *common.declare(declared),
        *[DeclareLaunchArgument(n, default_value="", description=DESCRIPTIONS[n])
          for n in ("servers", "devices", "capacity_file", "server_id_prefix", "pool_topic",
                    *[p for p in PARAMETERS if p not in declared])],
        OpaqueFunction(function=pool_servers),
    ])
