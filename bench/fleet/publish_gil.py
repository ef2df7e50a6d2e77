"""What a server's publishing costs its other threads: rclpy's ``publish(bytes)`` against
``mtl_split_ros.publish_bytes`` (the same bytes, the GIL released for the DDS write).

One process publishes a server's per-frame outputs as CDR bytes (detections ~1 KB, a 320x240
mono8 segmentation 77 KB, a 32FC1 depth 307 KB; a subscriber in another process takes them)
while a second thread runs pure Python (the worker's stand-in: it needs the GIL for all of its
work). Per pass: the publishing thread's ms per frame, and the share of the second thread's
work rate (measured alone just before) it kept while the publishing ran. The two ways
alternate, ``--passes`` times each, in one run (this machine is shared: compare in-run only).

    python bench/fleet/publish_gil.py --passes 6 --frames 300 --switch-ms 1 \
        --out bench/results/publish_gil/results.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

SIZES = {"detections": 1_200, "segmentation": 320 * 240, "depth": 320 * 240 * 4}
TOPIC = "publish_gil_bench"
SUBSCRIBER = f"""
import rclpy
from std_msgs.msg import UInt8MultiArray
rclpy.init()
node = rclpy.create_node("publish_gil_sink")
node.create_subscription(UInt8MultiArray, "{TOPIC}", lambda raw: None, 10, raw=True)
try:
    rclpy.spin(node)
except BaseException:
    pass
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--passes", type=int, default=6, help="passes per way, alternating")
    p.add_argument("--frames", type=int, default=300, help="frames (3 outputs each) per pass")
    p.add_argument("--switch-ms", type=float, default=1.0,
                   help="sys.setswitchinterval in ms (the server's gil_switch_interval_ms)")
    p.add_argument("--out", default=None, help="markdown table to write")
    args = p.parse_args(argv)
    if args.passes < 1 or args.frames < 1 or not 0 < args.switch_ms <= 100:
        p.error("--passes and --frames must be >= 1, --switch-ms in (0, 100]")
    sys.setswitchinterval(args.switch_ms / 1e3)

    import rclpy
    from rclpy.serialization import serialize_message
    from std_msgs.msg import UInt8MultiArray

    from mtl_split_ros import publish_bytes

    rclpy.init()
    node = rclpy.create_node("publish_gil_bench")
    pub = node.create_publisher(UInt8MultiArray, TOPIC, 10)
    sink = subprocess.Popen([sys.executable, "-c", SUBSCRIBER], start_new_session=True)
    try:
        while pub.get_subscription_count() == 0:
            if sink.poll() is not None:
                raise SystemExit("the subscriber process ended")
            time.sleep(0.1)
        outputs = [serialize_message(UInt8MultiArray(data=bytes(n))) for n in SIZES.values()]
        ways = {"rclpy publish(bytes)": pub.publish,
                "publish_bytes (GIL released)": lambda d: publish_bytes.publish(pub, d)}
        rows: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for n in range(args.passes):  # ABBA...: neither way always goes first
            for name in (list(ways) if n % 2 == 0 else list(ways)[::-1]):
                rows[name].append(_pass(ways[name], outputs, args.frames))
    finally:
        sink.terminate()
        sink.wait(10)
        node.destroy_node()
        rclpy.shutdown()
    table = _table(rows, args, publish_bytes.gil_free())
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
    return 0


def _pass(publish, outputs: list[bytes], frames: int) -> tuple[float, float]:
    """(publishing ms per frame, the Python thread's work rate kept, as a share of alone)."""
    count, stop = [0], [False]

    def work() -> None:
        while not stop[0]:
            count[0] += 1

    worker = threading.Thread(target=work)
    worker.start()
    try:
        time.sleep(0.2)
        c0, t0 = count[0], time.perf_counter()
        time.sleep(0.5)
        alone = (count[0] - c0) / (time.perf_counter() - t0)
        c0, t0 = count[0], time.perf_counter()
        for _ in range(frames):
            for data in outputs:
                publish(data)
        elapsed = time.perf_counter() - t0
        during = (count[0] - c0) / elapsed
    finally:
        stop[0] = True
        worker.join()
    return 1e3 * elapsed / frames, during / alone


def _table(rows: dict[str, list[tuple[float, float]]], args: argparse.Namespace,
           gil_free: bool) -> str:
    load = os.getloadavg()[0]
    lines = [
        "# Publishing a server's outputs: rclpy vs publish_bytes (GIL released)", "",
        f"Command: `python bench/fleet/publish_gil.py --passes {args.passes} --frames "
        f"{args.frames} --switch-ms {args.switch_ms:g}`  ",
        f"Machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load:.1f} at the end  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; publish_bytes.gil_free() = "
        f"{gil_free}  ",
        f"Per frame: {', '.join(f'{k} {v:,} B' for k, v in SIZES.items())} (CDR bytes, one "
        "subscriber in another process, the default RMW and its transport)", "",
        "| way | publishing ms per frame (median, min-max) | Python thread's rate kept "
        "while publishing (median, min-max) |",
        "|---|---:|---:|"]
    for name, values in rows.items():
        ms, kept = zip(*values)
        lines.append(f"| {name} | {statistics.median(ms):.3f} ({min(ms):.3f}-{max(ms):.3f}) | "
                     f"{statistics.median(kept):.0%} ({min(kept):.0%}-{max(kept):.0%}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
