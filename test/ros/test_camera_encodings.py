"""The probe of issue #24: every sensor_msgs colour encoding, as Image and as CompressedImage,
sent to a real edge node process over DDS. Each one cv_bridge converts gets the network's
outputs; the rest, and malformed frames, get their own reason on /diagnostics (read with the
real `ros2 topic echo`) and never reach the network."""

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image

from mtl_split.msg import SplitFeatures
from mtl_split_core import image_decode as dec
from mtl_split_ros.image_msg import to_uint8_array
from mtl_split_ros.qos import qos_from_name
from support.camera_encodings import (
    CONVERTED,
    NOT_CONVERTED,
    compressed,
    encode,
    image_fields,
    smooth_rgb,
)
from support.procs import python_process
from support.ros2cli import echo_once, missing_cli
from support.ros_nodes import node_args, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]
REL = qos_from_name("reliable", depth=10)
RGB = smooth_rgb(48, 64)


@pytest.fixture(scope="module")
def ros(ros_node):
    return ros_node


def _raw(sec, encoding, **changes):
    fields = image_fields(encode(RGB, encoding), encoding, pad=4)
    fields.update(changes)
    fields["data"] = to_uint8_array(fields["data"])
    msg = Image(**fields)
    msg.header.stamp.sec = sec
    return msg


def _compressed(sec, fmt, data):
    msg = CompressedImage(format=fmt, data=to_uint8_array(data))
    msg.header.stamp.sec = sec
    return msg


def _raw_cases():
    """(message, reason or None = must give outputs) for each case, stamps 1, 2, ..."""
    good = [(e, None, {}) for e in CONVERTED]
    rest = [(e, dec.UNCONVERTED_ENCODING if e == "nv24" else dec.NOT_COLOUR, {})
            for e in NOT_CONVERTED]
    malformed = [  # known encodings, wrong fields: the Bad input clause of #24
        ("bayer_rggb8", dec.ODD_SIZE, {"width": 63}),
        ("nv12", dec.ODD_SIZE, {"height": 47}),
        ("rgb8", dec.STEP_TOO_SMALL, {"step": 64 * 3 - 1}),
        ("bgr16", dec.DATA_LENGTH, {"height": 47}),
        ("yuyv", dec.DATA_LENGTH, {"step": 64 * 2 + 8}),
        ("mono8", dec.BAD_SIZE, {"width": 0}),
        ("rgb9", dec.UNKNOWN_ENCODING, {}),
    ]
    cases = []
    for i, (encoding, reason, changes) in enumerate(good + rest + malformed, start=1):
        base = "rgb8" if reason == dec.UNKNOWN_ENCODING else encoding
        msg = _raw(i, base, **changes)
        msg.encoding = encoding
        cases.append((f"{encoding} {changes or ''}".strip(), msg, reason))
    return cases


def _compressed_cases():
    depth_png = bytes(12) + compressed(RGB, "png")  # compressedDepth: 12-byte header + PNG
    specs = [("jpeg", compressed(RGB, "jpeg"), None), ("png", compressed(RGB, "png"), None),
             ("", compressed(RGB, "jpeg"), None), ("", compressed(RGB, "png"), None),
             ("rgb8; jpeg compressed bgr8", compressed(RGB, "jpeg"), None),
             ("16UC1; compressedDepth png", depth_png, dec.COMPRESSED_DEPTH),
             ("jpeg", compressed(RGB, "jpeg")[:100], dec.COMPRESSED_CORRUPT),
             ("h264", b"\x00\x00\x00\x01\x67 a video stream", dec.COMPRESSED_FORMAT)]
    return [(f"CompressedImage format {fmt!r}", _compressed(i, fmt, data), reason)
            for i, (fmt, data, reason) in enumerate(specs, start=1)]


class Edge:
    """What the edge publishes: stamps that got outputs, rejection counts on /diagnostics."""

    def __init__(self, node):
        self.served = set()
        self.rejected = {}
        for topic, kind in (("mtl_split/features", SplitFeatures), ("mtl_split/depth", Image)):
            node.create_subscription(kind, topic,
                                     lambda m: self.served.add(m.header.stamp.sec), REL)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def answered(self, sec, reason, before):
        """A check: frame ``sec`` got outputs (``reason`` None), or ``reason``'s count on
        /diagnostics went past ``before``."""
        if reason is None:
            return lambda: sec in self.served
        return lambda: self.rejected.get(reason, 0) > before

    def _on_diag(self, msg):
        for status in msg.status:
            for kv in status.values:
                if kv.key.startswith("rejected_image_"):
                    self.rejected[kv.key[len("rejected_"):]] = int(kv.value)


def _probe(ros, transport, cases, model):
    topic = "image/compressed" if transport == "compressed" else "image"
    edge_out = Edge(ros)
    pub = ros.create_publisher(CompressedImage if transport == "compressed" else Image,
                               topic, REL)
    args = node_args("mtl_split_edge", model=model, device="cpu", input_transport=transport,
                     diagnostics_period=0.2, fallback_after=0.1)
    failures = []
    with python_process(args) as edge:
        assert wait_for(ros, lambda: pub.get_subscription_count() > 0, 90, (edge,))
        for name, msg, reason in cases:
            sec = msg.header.stamp.sec
            if reason is not None:  # let the last case's resent copies be counted first
                wait_for(ros, lambda: False, 0.6, (edge,))
            before = edge_out.rejected.get(reason, 0)
            # Resend until answered: the edge keeps only its newest frame.
            done = edge_out.answered(sec, reason, before)
            for _ in range(20):
                pub.publish(msg)
                if wait_for(ros, done, 1.5, (edge,)):
                    break
            else:
                failures.append(f"{name}: " + ("no outputs" if reason is None else
                                               f"no rejected_{reason} on /diagnostics "
                                               f"(saw {edge_out.rejected})"))
        # Nothing rejected ever reached the network.
        leaked = [name for name, msg, reason in cases
                  if reason is not None and msg.header.stamp.sec in edge_out.served]
        assert not failures and not leaked, (failures, leaked)
        # The roboticist's view: each reason counted in `ros2 topic echo /diagnostics`.
        echoed = echo_once("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray",
                           "--no-daemon", timeout=90)
        assert echoed, "ros2 topic echo got no /diagnostics"
        values = {kv["key"]: kv["value"] for status in
                  yaml.safe_load(echoed.split("\n---")[0])["status"] for kv in status["values"]}
        for reason in {reason for _, _, reason in cases if reason}:
            assert int(values.get(f"rejected_{reason}", 0)) >= 1, (reason, echoed)


@pytest.mark.parametrize("transport, cases", [("raw", _raw_cases()),
                                              ("compressed", _compressed_cases())])
def test_every_encoding_through_a_real_edge(ros, model_dir, transport, cases):
    reason = missing_cli()
    if reason:
        pytest.skip(reason)
    _probe(ros, transport, cases, model_dir)


def test_the_probe_covers_every_sensor_msgs_colour_encoding():
    # image_encodings.hpp (Kilted): 10 RGB/mono, 8 Bayer, uyvy/yuyv and their old names,
    # nv12, nv21, nv24. The probe sends each, plus raw types a colour topic may see by mistake.
    colour = {f"{c}{b}" for c in ("rgb", "bgr", "rgba", "bgra", "mono") for b in (8, 16)}
    colour |= {f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)}
    colour |= {"yuv422", "uyvy", "yuv422_yuy2", "yuyv", "nv12", "nv21", "nv24"}
    sent = {msg.encoding for _, msg, _ in _raw_cases()}
    assert colour <= sent and not (colour - set(CONVERTED)) - {"nv24"}
    assert np.unique(RGB.reshape(-1, 3), axis=0).shape[0] > 100  # a real image, not a flat one
