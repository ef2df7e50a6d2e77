"""bench/pool/failover.py's own arithmetic, no processes: the header stamp the simulated
robots patch and read in a message's CDR bytes (real rclpy serialization of the three message
types they handle), the frames/s of a window, and bad arguments."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from rclpy.serialization import deserialize_message, serialize_message
from vision_msgs.msg import Detection2D, Detection2DArray

from mtl_split.msg import LinkFeedback, SplitFeatures

BENCH = Path(__file__).resolve().parents[3] / "bench" / "pool" / "failover.py"
spec = importlib.util.spec_from_file_location("bench_pool_failover", BENCH)
failover = importlib.util.module_from_spec(spec)
spec.loader.exec_module(failover)


@pytest.mark.parametrize("msg_type", [SplitFeatures, LinkFeedback, Detection2DArray])
def test_the_stamp_is_read_and_patched_in_the_cdr_bytes(msg_type):
    msg = msg_type()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_765_000_000, 123_456_789
    msg.header.frame_id = "r7_camera"
    if msg_type is Detection2DArray:
        msg.detections = [Detection2D() for _ in range(3)]
    raw = bytearray(serialize_message(msg))
    assert failover.cdr_stamp_ns(bytes(raw)) == 1_765_000_000_123_456_789
    failover.CDR_STAMP.pack_into(raw, failover.CDR_STAMP_AT, 1_765_000_001, 5)
    back = deserialize_message(bytes(raw), msg_type)
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (1_765_000_001, 5)
    assert back.header.frame_id == "r7_camera"  # nothing but the stamp moved
    with pytest.raises(ValueError):
        failover.cdr_stamp_ns(b"\x00\x00" + bytes(raw[2:]))  # big-endian: refused


def test_a_window_counts_what_was_made_sent_local_and_served():
    records = {"r1": {"sent_t": [0.5, 1.5, 2.5, 3.5], "local_t": [1.7],
                      "arrivals": [(1, 0.6), (2, 1.6), (3, 2.6)]},
               "r2": {"sent_t": [], "local_t": [1.1, 1.2, 5.0], "arrivals": []}}
    w = failover.window(records, 1.0, 3.0)
    assert w == {"made_fps": 2.5, "sent_fps": 1.0, "local_fps": 1.5, "served_fps": 1.0}


def test_bad_arguments_are_one_line_and_exit_2():
    r = subprocess.run([sys.executable, str(BENCH), "--robots", "0", "--rate", "-1",
                        "--out", "/nonexistent"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "--robots 1..256" in r.stderr and "--rate (0, 1000]" in r.stderr


def test_pool_events_are_counted_by_kind_and_reason_without_numbers():
    records = {"r1": {"events": [[1.0, "join", "a server with room"],
                                 [2.0, "move", "no answer for 0.52 s"],
                                 [9.0, "move", "3 robot(s) over the fair share here: load 9"]]},
               "r2": {"events": [[2.5, "move", "no answer for 0.61 s"]]},
               "r3": {}}  # a record from before events were kept
    got = failover.pool_events(records, 1.5, 10.0)
    assert got == {"by_kind": {"move": 3},
                   "by_reason": {"no answer for N s": 2,
                                 "N robot(s) over the fair share here": 1},
                   "last_before_end_s": 1.0}
    assert failover.pool_events(records, 20.0, 30.0)["last_before_end_s"] is None


def test_a_device_list_puts_server_i_on_its_own_device():
    assert failover.server_device("cuda", "pool_1") == "cuda"
    assert [failover.server_device("cuda:0, cuda:1", f"tp2_72_{i}") for i in range(3)] == \
        ["cuda:0", "cuda:1", "cuda:0"]
    assert failover.server_device("cuda:0,cuda:1", "pool_1") == "cuda:1"  # also restarted
