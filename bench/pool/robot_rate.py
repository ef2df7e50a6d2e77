"""Does a robot process of bench/pool/failover.py keep its offered rate? (issue #26: the
throughput phase's offered load must exceed what two servers serve.)

An answering pool server stand-in (this file run with ``--echo``: it announces itself with a
capacity of 1e5 frames/s and answers every features message at once with a LinkFeedback and a
Detection2DArray of ``--detections`` boxes, what a real server sends per frame) and
``--processes`` robot processes of ``--per-process`` robots at ``--rate`` (failover.py's own
robot processes). Reported per robot process: frames it sent per second (its offered rate)
and CPU cores it used over ``--seconds``; the echo's answers per second (if it falls behind,
the robots get fewer answers than on a GPU host and the figure is optimistic: it says so).

    python bench/pool/robot_rate.py --per-process 4 --processes 1 --rate 30 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "pool"))
ECHO_ID = "echo"
FINGERPRINT = "robot_rate"


def echo(args: argparse.Namespace) -> int:
    """The stand-in server: announcements every 0.25 s, every frame answered at once."""
    import rclpy
    from failover import CDR_STAMP, CDR_STAMP_AT, cdr_stamp_ns
    from rclpy.node import Node
    from rclpy.serialization import serialize_message
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    from mtl_split.msg import LinkFeedback, ServerAnnouncement, SplitFeatures
    from mtl_split_core.runtime.pool_admission import ServerAdmission
    from mtl_split_core.runtime.pool_announcement import (
        POOL_TOPIC,
        default_input_topic,
        robot_of_topic,
    )
    from mtl_split_ros import pool_msg
    from mtl_split_ros.qos import qos_from_name
    rclpy.init()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    node = Node("bench_robot_rate_echo")
    topic = default_input_topic(ECHO_ID)
    adm = ServerAdmission(ECHO_ID, topic, (FINGERPRINT,), capacity_fps=1e5, max_robots=256)
    ann_pub = node.create_publisher(ServerAnnouncement, POOL_TOPIC, pool_msg.POOL_QOS)
    node.create_timer(0.25, lambda: ann_pub.publish(pool_msg.announcement_to_msg(
        adm.announcement(time.monotonic()), node.get_clock().now().to_msg(), None)))
    detections = Detection2DArray()
    for i in range(args.detections):
        d = Detection2D()
        d.bbox.center.position.x, d.bbox.size_x, d.bbox.size_y = 10.0 * i, 20.0, 30.0
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = "person", 0.5
        d.results.append(hyp)
        detections.detections.append(d)
    answered = [0]
    known: set[str] = set()
    reliable = qos_from_name("reliable", depth=10)

    def serve(robot: str):
        fb_pub = node.create_publisher(LinkFeedback, f"/{robot}/mtl_split/link_feedback",
                                       reliable)
        det_pub = node.create_publisher(Detection2DArray, f"/{robot}/mtl_split/detections",
                                        reliable)
        answers = [(fb_pub, bytearray(serialize_message(LinkFeedback()))),
                   (det_pub, bytearray(serialize_message(detections)))]

        def on_frame(raw: bytes) -> None:  # CDR in and out: the robots must be the limit
            adm.admit(robot, time.monotonic())
            stamp = divmod(cdr_stamp_ns(raw), 1_000_000_000)
            for pub, cdr in answers:
                CDR_STAMP.pack_into(cdr, CDR_STAMP_AT, *stamp)
                pub.publish(bytes(cdr))
            answered[0] += 1
        node.create_subscription(SplitFeatures, topic.replace("{robot}", robot), on_frame,
                                 qos_from_name("reliable"), raw=True)

    def discover() -> None:
        for name, types in node.get_topic_names_and_types():
            robot = robot_of_topic(name, topic)
            if robot and robot not in known and "mtl_split/msg/SplitFeatures" in types:
                known.add(robot)
                serve(robot)
    node.create_timer(0.2, discover)

    def report() -> None:
        print(json.dumps({"answered": answered[0], "t": time.monotonic()}), flush=True)
    node.create_timer(1.0, report)
    while not stop.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-process", type=int, default=4)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--detections", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo:
        return echo(args)
    if not (1 <= args.per_process <= 64 and 1 <= args.processes <= 64 and 0 < args.rate
            <= 1000 and 0 <= args.detections <= 100 and args.seconds > 0):
        print("error: --per-process 1..64, --processes 1..64, --rate (0, 1000], "
              "--detections 0..100, --seconds > 0", file=sys.stderr)
        return 2
    from failover import cpu_seconds, record_message  # the benchmark's own
    out = Path(tempfile.mkdtemp(prefix="robot_rate_"))
    ns = argparse.Namespace(model="tiny", rate=args.rate)
    message = record_message(ns, out)
    procs: list[tuple[subprocess.Popen, Path]] = []
    echo_proc = subprocess.Popen([sys.executable, __file__, "--echo", "--detections",
                                  str(args.detections)], stdout=subprocess.PIPE, text=True,
                                 start_new_session=True)
    echo_lines: list[dict] = []
    threading.Thread(target=lambda: [echo_lines.append(json.loads(x)) for x in
                                     echo_proc.stdout], daemon=True).start()
    try:
        for p in range(args.processes):
            names = ",".join(f"p{p}r{i}" for i in range(args.per_process))
            record = out / f"robots_{p}.json"
            procs.append((subprocess.Popen(
                [sys.executable, str(ROOT / "bench/pool/failover.py"), "--worker",
                 "--names", names, "--rate", str(args.rate), "--fingerprint", FINGERPRINT,
                 "--message", str(message), "--record", str(record)],
                stdout=subprocess.DEVNULL, start_new_session=True), record))
        time.sleep(args.warmup)
        cpu0 = [cpu_seconds(p.pid) for p, _ in procs] + [cpu_seconds(echo_proc.pid)]
        t0 = time.monotonic()
        time.sleep(args.seconds)
        t1 = time.monotonic()
        cpu1 = [cpu_seconds(p.pid) for p, _ in procs] + [cpu_seconds(echo_proc.pid)]
    finally:
        for p, _ in procs:
            os.killpg(p.pid, signal.SIGINT)
        for p, _ in procs:
            p.wait(30)
        os.killpg(echo_proc.pid, signal.SIGINT)
        echo_proc.wait(30)
    per_process = []
    for (_, record), c0, c1 in zip(procs, cpu0, cpu1):
        robots = json.loads(record.read_text())
        sent = sum(sum(t0 <= t < t1 for t in r["sent_t"]) for r in robots.values())
        local = sum(sum(t0 <= t < t1 for t in r["local_t"]) for r in robots.values())
        answers = sum(sum(t0 <= t < t1 for _, t in r["arrivals"]) for r in robots.values())
        per_process.append({"offered_fps": args.per_process * args.rate,
                            "sent_fps": sent / (t1 - t0), "local_fps": local / (t1 - t0),
                            "outputs_fps": answers / (t1 - t0),
                            "cpu_cores": (c1 - c0) / (t1 - t0)})
    result = {"per_process": per_process, "echo_cpu_cores": (cpu1[-1] - cpu0[-1]) / (t1 - t0),
              "command": "python " + " ".join(sys.argv), "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
