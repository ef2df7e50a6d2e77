"""Cost of authenticated features: bytes added per SplitFeatures message and CPU time per sign
(edge) and verify (server), for the default model's features of the bench frames.

    python bench/auth_bench.py --repeat 2000 > bench/results/auth.md
    python bench/auth_bench.py --repeat 500 --split s4 --codec f16-zstd/1 >> bench/results/auth.md

Bytes are CDR sizes (what DDS carries): the message as it was before the auth fields existed
(the .msg without them, via rosbags), unsigned with the fields, and signed.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from rclpy.serialization import serialize_message
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from mtl_split_core.auth import AuthRejected, KeyRing, Signer, Verifier
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_ros.features_auth import sign, verify
from mtl_split_ros.features_msg import packet_to_msg

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "/mtl_split/features"


def bench_frames() -> list[np.ndarray]:
    d = np.load(ROOT / "bench" / "frames.npz")
    jpeg, offsets = d["jpeg"], d["offsets"]
    return [cv2.imdecode(jpeg[a:b], cv2.IMREAD_COLOR)[..., ::-1]
            for a, b in zip(offsets[:-1], offsets[1:])]


def size_without_auth_fields(cdr: bytes) -> int:
    """CDR size of the same message under the .msg definition without the auth fields."""
    text = (ROOT / "mtl_split_msgs" / "msg" / "SplitFeatures.msg").read_text()
    old_text = text.split("# Authentication", 1)[0]
    store = get_typestore(Stores.ROS2_KILTED)
    store.register({**get_types_from_msg(text, "mtl_split/msg/SplitFeatures"),
                    **get_types_from_msg(old_text, "bench/msg/OldSplitFeatures")})
    new = store.deserialize_cdr(cdr, "mtl_split/msg/SplitFeatures")
    old_cls = store.types["bench/msg/OldSplitFeatures"]
    fields = [f for f in new.__dataclass_fields__ if not f.startswith("auth_")
              and f != "__msgtype__"]
    old = old_cls(**{f: getattr(new, f) for f in fields})
    return len(store.serialize_cdr(old, "bench/msg/OldSplitFeatures"))


def per_call_us(fn, repeat: int) -> float:
    fn()  # warm
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e6


def measure(msg, ring: KeyRing, signer: Signer, repeat: int) -> tuple:
    """(payload, bytes before auth fields, unsigned, signed, sign µs, verify µs) of ``msg``."""
    unsigned = len(serialize_message(msg))
    before = size_without_auth_fields(serialize_message(msg))
    signed_msg = copy.deepcopy(msg)
    sign(signed_msg, signer)
    signed = len(serialize_message(signed_msg))
    sign_us = per_call_us(lambda: sign(msg, signer), repeat)
    verifier = Verifier(ring, max_age_s=0)  # the stamp is not what is measured
    signed_msgs = []  # one signed copy per call: each has a new sequence, as on the wire
    for _ in range(repeat + 1):
        sign(msg, signer)
        signed_msgs.append(copy.deepcopy(msg))
    calls = iter(signed_msgs)
    verify_us = per_call_us(lambda: verify(next(calls), verifier, TOPIC, 0), repeat)
    msg.auth_tag = bytes(32)  # a forged tag is refused after the same HMAC work
    try:
        verify(msg, verifier, TOPIC, 0)
        raise AssertionError("forged tag accepted")
    except AuthRejected as err:
        assert err.reason == "auth_forged", err.reason
    return len(msg.data), before, unsigned, signed, sign_us, verify_us


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2000, help="calls timed per frame")
    ap.add_argument("--split", default="", help="split point; '' = the model's default")
    ap.add_argument("--codec", default="", help="codec; '' = the model's default")
    args = ap.parse_args()
    runner = EdgeRunner.from_path("", split=args.split, device="cpu", codec=args.codec or None)
    ring = KeyRing({"robot1-2026a": bytes(range(32))})
    signer = Signer(ring)
    rows = []
    for rgb in bench_frames():
        msg = packet_to_msg(runner(np.ascontiguousarray(rgb)))
        msg.header.frame_id = "camera_optical_frame"
        rows.append(measure(msg, ring, signer, args.repeat))
    a = np.array(rows, dtype=float)
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line),
               platform.processor())
    options = "".join(f" --{k} {v}" for k, v in (("split", args.split), ("codec", args.codec))
                      if v)
    print(f"Command: `python bench/auth_bench.py --repeat {args.repeat}{options}`  ")
    print(f"Machine: {cpu}, {platform.system()} {platform.release()}, Python "
          f"{platform.python_version()}  ")
    print(f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  ")
    print(f"Model: default ({runner.card.get('name')}, split {runner.split}, codec "
          f"{runner.codec}); {len(rows)} frames of bench/frames.npz; key id "
          f"'{signer.key_id}'\n")
    print("| | median | min | max |\n|---|---:|---:|---:|")
    names = ["payload bytes (`data`)", "message bytes before the auth fields (CDR)",
             "message bytes, unsigned (CDR)", "message bytes, signed (CDR)",
             "sign, µs per message (edge)", "verify, µs per message (server)"]
    for i, name in enumerate(names):
        col = a[:, i]
        fmt = "{:.1f}" if i >= 4 else "{:.0f}"
        print(f"| {name} | " + " | ".join(fmt.format(v) for v in
                                          (np.median(col), col.min(), col.max())) + " |")
    added_unsigned = a[:, 2] - a[:, 1]
    added_signed = a[:, 3] - a[:, 1]
    print(f"\nBytes added per message: unsigned {added_unsigned.min():.0f}-"
          f"{added_unsigned.max():.0f} (empty key id, sequence, empty tag), signed "
          f"{added_signed.min():.0f}-{added_signed.max():.0f} (key id + 8-byte sequence + "
          f"32-byte tag + lengths and CDR alignment); "
          f"{np.median(added_signed / a[:, 1]) * 100:.2f}% of the median message.")


if __name__ == "__main__":
    main()
