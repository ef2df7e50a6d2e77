"""A temporal codec over real DDS: the edge node streams keyframes and deltas, a relay between
it and the server node loses one delta, the server refuses the next delta and answers
NEED_KEYFRAME, the edge's next frame is a keyframe and the stream is served again."""

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from mtl_split.msg import LinkFeedback, SplitFeatures
from mtl_split_core.codec import EncodedTensor
from mtl_split_core.temporal_codec import NEEDS_KEYFRAME, is_keyframe
from mtl_split_ros.image_msg import fill_image
from mtl_split_ros.qos import qos_from_name
from support.camera_encodings import smooth_rgb
from support.procs import python_process
from support.ros_nodes import node_args, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]
REL = qos_from_name("reliable", depth=10)
# Keyframes only when asked (or at the start): every one after the first is a request's.
CODEC = "t3600-s0-q4-zstd/1"
EDGE_OUT = "mtl_split/edge_features"


def _frame(sec: int) -> Image:
    """Camera frame ``sec``: a gradient whose blue channel moves on every frame."""
    rgb = smooth_rgb(96, 128)
    rgb[..., 2] = (rgb[..., 2].astype(np.int64) + 25 * sec) % 256
    msg = fill_image(Image(), rgb, "rgb8")
    msg.header.stamp.sec, msg.header.frame_id = sec, "test_cam"
    return msg


def _keyframe(msg: SplitFeatures) -> bool:
    return is_keyframe(EncodedTensor(msg.codec, tuple(msg.shape), np.zeros(0, np.float32),
                                     np.zeros(0, np.float32), bytes(msg.data)))


def test_a_lost_delta_leads_to_a_keyframe_request_and_recovery(ros_node, model_dir):
    ros = ros_node
    sent: list[tuple[int, bool]] = []      # (stamp sec, keyframe) the edge published
    dropped: list[int] = []                # stamps the relay lost
    answers: list[tuple[int, int]] = []    # (stamp sec, status) the server answered
    diag: dict[str, dict] = {}
    forward = ros.create_publisher(SplitFeatures, "mtl_split/features", REL)

    def relay(msg: SplitFeatures) -> None:
        key = _keyframe(msg)
        sent.append((msg.header.stamp.sec, key))
        # Lose the second delta after the first keyframe, once.
        if not dropped and not key and sum(1 for _, k in sent if not k) == 2:
            dropped.append(msg.header.stamp.sec)
            return
        forward.publish(msg)

    subs = [
        ros.create_subscription(SplitFeatures, EDGE_OUT, relay, REL),
        ros.create_subscription(LinkFeedback, "mtl_split/link_feedback",
                                lambda m: answers.append((m.header.stamp.sec, m.status)), REL),
        ros.create_subscription(
            DiagnosticArray, "/diagnostics",
            lambda m: diag.update({s.name: {kv.key: kv.value for kv in s.values}
                                   for s in m.status}), qos_profile_sensor_data)]
    camera = ros.create_publisher(Image, "image", REL)
    edge_args = node_args("mtl_split_edge", model=model_dir, device="cpu", codec=CODEC,
                          diagnostics_period=0.5) + [
        "-r", f"mtl_split/features:={EDGE_OUT}"]
    server_args = node_args("mtl_split_server", model=model_dir, device="cpu",
                            diagnostics_period=0.5)
    with python_process(edge_args) as edge, python_process(server_args) as server:
        assert wait_for(ros, lambda: camera.get_subscription_count() > 0
                        and forward.get_subscription_count() > 0
                        and ros.count_publishers(EDGE_OUT) > 0
                        and ros.count_publishers("mtl_split/link_feedback") > 0, 90,
                        (edge, server))

        def recovered() -> bool:
            """A keyframe after the loss was served, and a delta after it too."""
            if not dropped:
                return False
            served = {sec for sec, status in answers if status == LinkFeedback.SERVED}
            later = [(sec, key) for sec, key in sent if sec > dropped[0]]
            keys = [sec for sec, key in later if key and sec in served]
            return bool(keys) and any(not key and sec > keys[0] and sec in served
                                      for sec, key in later)

        sec, end = 1, time.time() + 90
        while time.time() < end and not recovered():
            camera.publish(_frame(sec))
            sec += 1
            count = len(sent)
            wait_for(ros, lambda: len(sent) > count, 2, (edge, server))  # noqa: B023

        assert recovered(), (sent, dropped, answers)
        lost = dropped[0]
        refused = [s for s, status in answers if status == LinkFeedback.NEED_KEYFRAME]
        # The frame after the lost one was refused (and asked for a keyframe); none before it.
        assert refused and min(refused) > lost, (refused, lost)
        assert all(s > lost for s in refused)
        first_key_after = min(s for s, key in sent if key and s > lost)
        assert first_key_after > min(refused)
        # Nothing the server served was mis-decoded: every served frame is a keyframe or a
        # delta whose predecessor reached the server (the relay lost only ``lost``).
        assert lost not in {s for s, status in answers if status == LinkFeedback.SERVED}
        # A burst of refusals costs one keyframe per round trip at most, not one per frame.
        keys_after = [s for s, key in sent if key and s > lost]
        assert len(keys_after) <= len(refused)
        assert wait_for(ros, lambda: any(int(v.get(f"rejected_{NEEDS_KEYFRAME}", 0)) >= 1
                                         for v in diag.values()), 10, (edge, server)), diag
        # The edge counts the keyframes it sent and the refusals that asked for one.
        assert wait_for(ros, lambda: any(int(v.get("keyframe_requests", 0)) >= 1
                                         and int(v.get("keyframes_sent", 0)) >= 2
                                         for v in diag.values()), 10, (edge, server)), diag
    for sub in subs:
        ros.destroy_subscription(sub)
