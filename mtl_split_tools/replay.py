"""`mtl-split replay BAG`: publish a bag's messages on their topics with the recorded timing.

Works where rosbag2 is not installed (rosbags reads MCAP and sqlite3 bags). Messages go out as
the serialized CDR bytes from the bag (no decode / re-encode). ``--clock`` publishes /clock
with the bag time so nodes with use_sim_time follow the bag. SIGINT (Ctrl-C) and SIGTERM stop
cleanly: the messages replayed so far are reported and the exit code is 0.
"""

from __future__ import annotations

import importlib
import time

import rclpy
from rclpy.duration import Duration
from rclpy.qos import ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from tqdm import tqdm

from mtl_split_core.bags import BagError, messages, open_bag
from mtl_split_ros.qos import QOS_PROFILES, qos_from_name
from mtl_split_ros.shutdown import StopSignals, init_without_signal_handlers, shutdown_quietly

CLOCK_PERIOD_S = 0.01
ACK_TIMEOUT_S = 5.0  # how long the last reliable messages may take to be acknowledged


def message_class(msgtype: str):
    """The rclpy class for 'pkg/msg/Name', or None when it is not installed here."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        return None


def parse_remaps(remaps) -> dict[str, str]:
    out = {}
    for r in remaps or []:
        if ":=" not in r:
            raise ValueError(f"remap {r!r}: expected old:=new")
        old, new = r.split(":=", 1)
        out[old] = new
    return out


def replay(bag, topics=None, rate: float = 1.0, loop: bool = False, clock: bool = False,
           remaps=None, qos: str = "reliable", wait_subscribers: int = 0,
           progress: bool = True) -> int:
    """Replay ``bag``; returns the number of messages published."""
    if rate <= 0:
        raise ValueError(f"rate {rate} must be > 0")
    remap = parse_remaps(remaps)
    with StopSignals() as stop:
        init_without_signal_handlers()
        node = rclpy.create_node("mtl_split_replay")
        published = 0
        try:
            with open_bag(bag) as reader:
                pubs = _publishers(node, reader, bag, topics, remap, qos)
                clock_pub = node.create_publisher(Clock, "/clock", 10) if clock else None
                deadline = time.monotonic() + 10
                while wait_subscribers and time.monotonic() < deadline and \
                        not stop.is_set() and any(p.get_subscription_count() < wait_subscribers
                                                  for p in pubs.values()):
                    rclpy.spin_once(node, timeout_sec=0.05)
                if wait_subscribers:
                    # Discovery is asymmetric: we may see the reader before it has matched us,
                    # and a volatile sample sent in that gap is lost. Give it a moment.
                    stop.wait(0.5)
                total = sum(c.msgcount for c in reader.connections if c.topic in pubs)
                while not stop.is_set():
                    published += _play_once(reader, bag, pubs, clock_pub, rate, total,
                                            progress, stop)
                    if not loop:
                        break
                if qos_from_name(qos).reliability == ReliabilityPolicy.RELIABLE:
                    # Exiting right after the last publish can lose it downstream.
                    for pub in pubs.values():
                        pub.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
        finally:
            node.destroy_node()
            shutdown_quietly()
    return published


def _publishers(node, reader, bag, topics, remap, qos) -> dict:
    pubs = {}
    for c in reader.connections:
        if topics and c.topic not in topics:
            continue
        cls = message_class(c.msgtype)
        if cls is None:
            node.get_logger().warning(f"skipping {c.topic}: type {c.msgtype} is not "
                                      f"installed here")
            continue
        pubs[c.topic] = node.create_publisher(cls, remap.get(c.topic, c.topic),
                                              qos_from_name(qos, depth=10))
    if not pubs:
        raise BagError(f"{bag}: nothing to replay (topics: "
                       f"{sorted(c.topic for c in reader.connections)})")
    return pubs


def _play_once(reader, bag, pubs, clock_pub, rate, total, progress, stop) -> int:
    start_wall = bag_start = None
    count = 0
    bar = tqdm(total=total, desc="replay", unit="msg", disable=not progress)
    for conn, stamp_ns, raw in messages(reader, bag, set(pubs)):
        if start_wall is None:
            start_wall, bag_start = time.monotonic(), stamp_ns
        due = start_wall + (stamp_ns - bag_start) / 1e9 / rate
        while not stop.is_set():
            now = time.monotonic()
            if clock_pub is not None:
                bag_now = bag_start + int((min(now, due) - start_wall) * rate * 1e9)
                msg = Clock()
                msg.clock.sec, msg.clock.nanosec = divmod(bag_now, 1_000_000_000)
                clock_pub.publish(msg)
            if now >= due:
                break
            time.sleep(min(due - now, CLOCK_PERIOD_S))
        if stop.is_set():
            break
        pubs[conn.topic].publish(bytes(raw))
        count += 1
        bar.update()
    bar.close()
    return count


def add_arguments(p) -> None:
    p.add_argument("bag", help="rosbag2 folder or .mcap/.db3 file")
    p.add_argument("--topics", nargs="*", default=None, help="only these topics")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--clock", action="store_true", help="publish /clock with the bag time")
    p.add_argument("--remap", nargs="*", default=None, metavar="OLD:=NEW")
    p.add_argument("--qos", default="reliable", choices=QOS_PROFILES)
    p.add_argument("--wait-subscribers", type=int, default=0,
                   help="wait (up to 10 s) until every topic has this many subscribers")


def run(args) -> int:
    try:
        n = replay(args.bag, args.topics, args.rate, args.loop, args.clock, args.remap,
                   args.qos, args.wait_subscribers)
    except (BagError, ValueError) as err:
        print(f"mtl-split replay: {err}")
        return 1
    print(f"replayed {n} messages")
    return 0
