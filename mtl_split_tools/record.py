"""`mtl-split record OUT_BAG --topics ...`: record topics into an MCAP rosbag2.

Messages are stored as the serialized bytes received (no decode); every connection carries its
message definition — ours (mtl_split/msg/*) included — so ``ros2 bag info`` and rosbags-based
tools can decode the bag. Stops on SIGINT (Ctrl-C) or SIGTERM, after --duration seconds or
--max-messages; every way closes the bag completely and prints the summary line.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import rclpy

from mtl_split_core.bags import BagError, BagWriter
from mtl_split_core.cli.arguments import (
    check_can_create,
    non_negative_float,
    positive_float,
    positive_int,
)
from mtl_split_core.errors import InputError
from mtl_split_ros.qos import QOS_PROFILES, qos_from_name
from mtl_split_ros.shutdown import StopSignals, init_without_signal_handlers, shutdown_quietly
from mtl_split_tools.replay import message_class


def record(out_bag, topics, duration: float | None = None, max_messages: int | None = None,
           qos: str = "reliable", discovery_timeout: float = 10.0) -> dict[str, int]:
    """Record ``topics`` into ``out_bag``; returns messages written per topic."""
    out_bag = Path(out_bag)
    if out_bag.exists():
        raise BagError(f"{out_bag}: already exists; choose a new output path")
    check_can_create(out_bag)
    for topic in topics:
        if not topic.startswith("/"):
            raise InputError(f"topic {topic!r}: expected an absolute name like "
                             f"/mtl_split/detections")
    counts = {t: 0 for t in topics}
    with StopSignals() as stop:
        init_without_signal_handlers()
        node = rclpy.create_node("mtl_split_record")
        try:
            types = _discover(node, topics, discovery_timeout, stop)
            if stop.is_set():
                return counts  # stopped before anything was recorded: no bag at all
            writer = BagWriter(out_bag)  # refuses an existing path: what follows is ours
            try:
                _record(node, writer, types, counts, duration, max_messages, qos, stop)
            except BaseException:
                shutil.rmtree(out_bag, ignore_errors=True)  # a failed run leaves no bag
                raise
        finally:
            node.destroy_node()
            shutdown_quietly()
    return counts


def _record(node, writer, types, counts, duration, max_messages, qos, stop) -> None:
    with writer:
        def callback(topic, msgtype):
            def store(data: bytes):
                writer.write_raw(topic, msgtype, node.get_clock().now().nanoseconds,
                                 data)
                counts[topic] += 1
            return store
        for topic, msgtype in types.items():
            if msgtype not in writer.store.types:
                node.get_logger().warning(f"skipping {topic}: no definition for "
                                          f"{msgtype}")
                continue
            node.create_subscription(message_class(msgtype), topic,
                                     callback(topic, msgtype),
                                     qos_from_name(qos, depth=50), raw=True)
        start = time.monotonic()
        while not stop.is_set():
            rclpy.spin_once(node, timeout_sec=0.05)
            if duration and time.monotonic() - start >= duration:
                break
            if max_messages and sum(counts.values()) >= max_messages:
                break


def _discover(node, topics, timeout, stop: StopSignals) -> dict[str, str]:
    """Wait until every topic has a publisher; their types as 'pkg/msg/Name'."""
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while time.monotonic() < deadline and not stop.is_set():
        found = {name: kinds[0] for name, kinds in node.get_topic_names_and_types()
                 if name in topics}
        if len(found) == len(topics):
            break
        rclpy.spin_once(node, timeout_sec=0.1)
    missing = set(topics) - set(found)
    if missing and not stop.is_set():
        raise BagError(f"no publisher for {sorted(missing)} within {timeout:.0f} s "
                       f"(topic names are absolute, e.g. /mtl_split/detections)")
    return found


def add_arguments(p) -> None:
    p.add_argument("out_bag", help="output rosbag2 folder (must not exist)")
    p.add_argument("--topics", nargs="+", required=True, help="absolute topic names")
    p.add_argument("--duration", type=positive_float, default=None, help="seconds to record")
    p.add_argument("--max-messages", type=positive_int, default=None)
    p.add_argument("--qos", default="reliable", choices=QOS_PROFILES)
    p.add_argument("--discovery-timeout", type=non_negative_float, default=10.0)


def run(args) -> int:
    # Unusable input raises InputError (BagError, ...): one line on stderr and exit 2.
    counts = record(args.out_bag, args.topics, args.duration, args.max_messages, args.qos,
                    args.discovery_timeout)
    print("recorded " + ", ".join(f"{t}: {n}" for t, n in counts.items()))
    return 0
