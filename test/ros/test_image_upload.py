"""Split input over real DDS: the edge node uploads the model-input image (no network on the
robot), the server node decodes it and runs the whole network; its outputs equal local
inference on the decoded image, and a hostile image is rejected with its reason while the next
good frame is served."""

import array
import time

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from mtl_split.msg import SplitFeatures
from mtl_split_core.image_codec import DEFAULT_IMAGE_CODEC, decode_image
from mtl_split_core.model import load_model
from mtl_split_core.runtime.packet import INPUT_SPLIT_INDEX
from mtl_split_ros.image_msg import fill_image
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process
from support.ros_nodes import node_args, tiny_model, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]
REL = qos_from_name("reliable", depth=10)


def _frame(sec: int) -> Image:
    """A smooth 160x120 frame (letterboxed to the model's 128x96 without padding)."""
    yy, xx = np.mgrid[0:120, 0:160]
    rgb = np.stack([xx * 1.5, yy * 2, (xx + yy + 40 * sec) % 256], -1).astype(np.uint8)
    msg = fill_image(Image(), rgb, "rgb8")
    msg.header.stamp.sec, msg.header.frame_id = sec, "test_cam"
    return msg


def _by_stamp(store: dict, sec: int) -> list:
    return [m for m in store.get("msgs", []) if m.header.stamp.sec == sec]


def test_split_input_through_the_edge_and_server_nodes(ros_node, tmp_path):
    ros = ros_node
    model_dir = tiny_model(tmp_path / "tiny")
    got: dict[str, dict] = {"features": {}, "depth": {}, "segmentation": {}}
    subs = [ros.create_subscription(t, f"mtl_split/{name}",
                                    lambda m, n=name: got[n].setdefault("msgs", []).append(m),
                                    REL)
            for name, t in (("features", SplitFeatures), ("depth", Image),
                            ("segmentation", Image))]
    diag: dict[str, dict] = {}
    subs.append(ros.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: diag.update({s.name: {kv.key: kv.value for kv in s.values} for s in m.status}),
        qos_profile_sensor_data))
    pub = ros.create_publisher(Image, "image", REL)
    forged = ros.create_publisher(SplitFeatures, "mtl_split/features", REL)
    edge_args = node_args("mtl_split_edge", model=model_dir, device="cpu", split="input")
    server_args = node_args("mtl_split_server", model=model_dir, device="cpu",
                            diagnostics_period=0.5)
    with python_process(edge_args) as edge, python_process(server_args) as server:
        assert wait_for(ros, lambda: ros.count_subscribers("image") > 0
                        and ros.count_subscribers("mtl_split/depth") > 0
                        and ros.count_publishers("mtl_split/link_feedback") > 0, 90,
                        (edge, server))
        time.sleep(0.5)  # discovery is asymmetric: let the edge match our publisher

        def serve(sec: int) -> bool:
            """Send frame ``sec`` until its depth and segmentation arrive."""
            for _ in range(20):
                pub.publish(_frame(sec))
                if wait_for(ros, lambda: _by_stamp(got["depth"], sec)
                            and _by_stamp(got["segmentation"], sec)
                            and _by_stamp(got["features"], sec), 3, (edge, server)):
                    return True
            return False

        assert serve(1), got.keys()
        feats = _by_stamp(got["features"], 1)[-1]
        assert (feats.split_index, feats.codec) == (INPUT_SPLIT_INDEX, DEFAULT_IMAGE_CODEC)
        assert tuple(feats.shape) == (3, 96, 128) and len(feats.scale) == 0
        assert 0 < len(feats.data) < 128 * 96 * 3 / 4
        # Local inference on the image the server decoded: the whole network at the default
        # split, on the same pixels.
        image = decode_image(np.asarray(feats.data, np.uint8).tobytes(), feats.codec, (128, 96))
        net, card = load_model(model_dir)
        with torch.inference_mode():
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
            local = net.eval()(x, card["default_split"])
        depth = _by_stamp(got["depth"], 1)[-1]
        seg = _by_stamp(got["segmentation"], 1)[-1]
        assert (depth.width, depth.height) == (128, 96)
        served = np.frombuffer(depth.data, np.float32).reshape(96, 128)
        np.testing.assert_allclose(served, local["depth"][0, 0].numpy(), rtol=1e-4, atol=1e-5)
        classes = np.frombuffer(seg.data, np.uint8).reshape(96, 128)
        assert (classes == local["segmentation"][0].argmax(0).numpy()).mean() > 0.999

        # A hostile image (truncated) on the features topic: rejected with its reason, and
        # the next good frame is served.
        bad = SplitFeatures()
        for field in ("model_id", "model_fingerprint", "split_index", "source_width",
                      "source_height", "transform", "codec", "shape", "camera_info"):
            setattr(bad, field, getattr(feats, field))
        bad.header.stamp.sec = 2
        bad.data = array.array("B", bytes(feats.data)[:60])
        assert wait_for(ros, lambda: forged.get_subscription_count() > 0, 10)
        for _ in range(10):
            forged.publish(bad)
            if wait_for(ros, lambda: any(int(v.get("rejected_upload_corrupt", 0)) >= 1
                                         for v in diag.values()), 2, (edge, server)):
                break
        assert any(int(v.get("rejected_upload_corrupt", 0)) >= 1 for v in diag.values()), diag
        assert serve(3)
    for sub in subs:
        ros.destroy_subscription(sub)
