"""`mtl-split replay BAG`: publish a bag's messages on their topics with the recorded timing.

Works where rosbag2 is not installed (rosbags reads MCAP and sqlite3 bags). Messages go out as
the serialized CDR bytes from the bag (no decode / re-encode). ``--clock`` publishes /clock
with the bag time so nodes with use_sim_time follow the bag. SIGINT (Ctrl-C) and SIGTERM stop
cleanly: the messages replayed so far are reported and the exit code is 0. ``--wait-subscribers
N`` holds the first message until every topic has N matched readers; after the last one, the
command waits (``--drain-timeout``) until reliable readers acknowledged it before exiting.
"""

from __future__ import annotations

import argparse
import importlib
import time

import rclpy
from rclpy.duration import Duration
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from tqdm import tqdm

from mtl_split_core.bags import BagError, messages, open_bag
from mtl_split_core.cli.arguments import non_negative_float, non_negative_int, positive_float
from mtl_split_core.errors import InputError
from mtl_split_ros.qos import QOS_PROFILES, qos_from_name
from mtl_split_ros.shutdown import StopSignals, init_without_signal_handlers, shutdown_quietly

CLOCK_PERIOD_S = 0.01
# A volatile sample written right after the writer matched a reader can be lost while the
# reader has not yet matched the writer (discovery is asymmetric): a moment for the other side.
MATCH_SETTLE_S = 0.5
# Best-effort readers send no acknowledgements: after the last publish, the time given to the
# middleware to push it out (the publish is asynchronous) before the node is destroyed.
BEST_EFFORT_LINGER_S = 0.5


def message_class(msgtype: str):
    """The rclpy class for 'pkg/msg/Name', or None when it is not installed here."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        return None


def remap_rule(text: str) -> tuple[str, str]:
    """'OLD:=NEW' -> (OLD, NEW); an argparse type."""
    old, sep, new = text.partition(":=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"{text!r}: expected OLD:=NEW")
    return old, new


def parse_remaps(remaps) -> dict[str, str]:
    out = {}
    for r in remaps or []:
        try:
            old, new = r if isinstance(r, tuple) else remap_rule(r)
        except argparse.ArgumentTypeError as err:
            raise InputError(f"remap {err}") from None
        out[old] = new
    return out


class MatchedReaders:
    """Readers matched by each publisher, from the middleware's matched events (not the graph
    cache, which lists a subscription before the writer can deliver to it)."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}

    def callbacks(self, topic: str) -> PublisherEventCallbacks:
        self.count[topic] = 0

        def matched(info) -> None:
            self.count[topic] = info.current_count
        return PublisherEventCallbacks(matched=matched)

    def fewest(self) -> tuple[str, int]:
        topic = min(self.count, key=self.count.__getitem__)
        return topic, self.count[topic]


def replay(bag, topics=None, rate: float = 1.0, loop: bool = False, clock: bool = False,
           remaps=None, qos: str = "reliable", wait_subscribers: int = 0,
           progress: bool = True, wait_timeout: float = 10.0,
           drain_timeout: float = 5.0) -> dict:
    """Replay ``bag``; returns {"published": n, "delivered": bool, "interrupted": bool}.

    ``wait_subscribers``: first wait (up to ``wait_timeout`` s) until every topic's publisher
    matched that many readers. After the last message, wait (up to ``drain_timeout`` s) until
    every reliable reader acknowledged it, so exiting does not lose it downstream."""
    if rate <= 0:
        raise InputError(f"rate {rate} must be > 0")
    remap = parse_remaps(remaps)
    with StopSignals() as stop:
        init_without_signal_handlers()
        node = rclpy.create_node("mtl_split_replay")
        published, delivered = 0, True
        try:
            with open_bag(bag) as reader:
                matched = MatchedReaders()
                pubs = _publishers(node, reader, bag, topics, remap, qos, matched)
                clock_pub = node.create_publisher(Clock, "/clock", 10) if clock else None
                if wait_subscribers:
                    _wait_for_readers(node, matched, wait_subscribers, wait_timeout, stop)
                total = sum(c.msgcount for c in reader.connections if c.topic in pubs)
                while not stop.is_set():
                    published += _play_once(reader, bag, pubs, clock_pub, rate, total,
                                            progress, stop)
                    if not loop:
                        break
                if published:
                    delivered = _drain(node, pubs, qos, drain_timeout)
        finally:
            node.destroy_node()
            shutdown_quietly()
        return {"published": published, "delivered": delivered,
                "interrupted": stop.is_set()}


def _wait_for_readers(node, matched: MatchedReaders, wanted: int, timeout: float,
                      stop: StopSignals) -> None:
    deadline = time.monotonic() + timeout
    while matched.fewest()[1] < wanted and time.monotonic() < deadline and not stop.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
    topic, count = matched.fewest()
    if count < wanted and not stop.is_set():
        node.get_logger().warning(f"{topic}: {count} of {wanted} subscribers matched within "
                                  f"{timeout:g} s; replaying anyway")
    stop.wait(MATCH_SETTLE_S)


def _drain(node, pubs, qos: str, timeout: float) -> bool:
    """Wait until the last messages reached the readers; False when ``timeout`` ran out."""
    if qos_from_name(qos).reliability != ReliabilityPolicy.RELIABLE:
        time.sleep(min(timeout, BEST_EFFORT_LINGER_S))
        return True
    deadline = time.monotonic() + timeout
    acked = all(pub.wait_for_all_acked(Duration(seconds=max(0.0, deadline - time.monotonic())))
                for pub in pubs.values())
    if not acked:
        node.get_logger().warning(f"not every subscriber acknowledged the last messages "
                                  f"within {timeout:g} s (--drain-timeout)")
    return acked


def _publishers(node, reader, bag, topics, remap, qos, matched: MatchedReaders) -> dict:
    pubs = {}
    for c in reader.connections:
        if topics and c.topic not in topics:
            continue
        cls = message_class(c.msgtype)
        if cls is None:
            node.get_logger().warning(f"skipping {c.topic}: type {c.msgtype} is not "
                                      f"installed here")
            continue
        pubs[c.topic] = node.create_publisher(
            cls, remap.get(c.topic, c.topic), qos_from_name(qos, depth=10),
            event_callbacks=matched.callbacks(c.topic))
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
    p.add_argument("--rate", type=positive_float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--clock", action="store_true", help="publish /clock with the bag time")
    p.add_argument("--remap", nargs="*", type=remap_rule, default=None, metavar="OLD:=NEW")
    p.add_argument("--qos", default="reliable", choices=QOS_PROFILES)
    p.add_argument("--wait-subscribers", type=non_negative_int, default=0, metavar="N",
                   help="first wait until every topic has N matched subscribers")
    p.add_argument("--wait-timeout", type=non_negative_float, default=10.0, metavar="S",
                   help="... for at most S seconds, then replay anyway (default 10)")
    p.add_argument("--drain-timeout", type=non_negative_float, default=5.0, metavar="S",
                   help="after the last message, wait up to S seconds until every reliable "
                        "subscriber acknowledged it (default 5)")


def run(args) -> int:
    # Unusable input raises InputError (BagError, ...): one line on stderr and exit 2.
    result = replay(args.bag, args.topics, args.rate, args.loop, args.clock, args.remap,
                    args.qos, args.wait_subscribers, wait_timeout=args.wait_timeout,
                    drain_timeout=args.drain_timeout)
    note = " (interrupted)" if result["interrupted"] else ""
    if not result["delivered"]:
        note += " (not all acknowledged)"
    print(f"replayed {result['published']} messages{note}")
    return 0
