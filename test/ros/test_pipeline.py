"""Edge and server nodes as separate processes over real DDS: outputs, bad input, bad params."""

import array
import time

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from vision_msgs.msg import Detection2DArray
from visualization_msgs.msg import MarkerArray

from mtl_split.msg import SplitFeatures
from mtl_split_core.codec import encode
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_ros.features_msg import packet_to_msg
from mtl_split_ros.image_msg import fill_image
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process, stop
from support.ros_nodes import wait_for

pytestmark = pytest.mark.ros
NODE = "from {module}.node import main; import sys; sys.exit(main())"
REL = qos_from_name("reliable", depth=10)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    torch_net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                              input_size=(128, 96), bottlenecks={"s16": 8},
                                              depth_reference_focal=100.0))
    save_model(path, torch_net.eval())
    return str(path)


@pytest.fixture(scope="module")
def ros(ros_node):
    return ros_node


def _args(module, **params):
    out = ["-c", NODE.format(module=module), "--ros-args"]
    for k, v in params.items():
        out += ["-p", f"{k}:={v}"]
    return out


class Outputs:
    """Subscribes to every server output and remembers messages by type."""

    def __init__(self, node, prefix="mtl_split/"):
        self.got = {}
        topics = {"detections": Detection2DArray, "detections/markers": MarkerArray,
                  "segmentation": Image, "segmentation/color": Image, "depth": Image,
                  "camera_info": CameraInfo, "points": PointCloud2, "annotated": Image,
                  "features": SplitFeatures}
        self.subs = [node.create_subscription(t, prefix + name, self._store(name), REL)
                     for name, t in topics.items()]
        self.diag = {}
        self.subs.append(node.create_subscription(DiagnosticArray, "/diagnostics",
                                                  self._on_diag, qos_profile_sensor_data))

    def _store(self, name):
        return lambda msg: self.got.setdefault(name, []).append(msg)

    def _on_diag(self, msg):
        for s in msg.status:
            self.diag[s.name] = {kv.key: kv.value for kv in s.values}

    def with_stamp(self, name, sec):
        def header(m):  # a MarkerArray has no header; its DELETEALL marker carries it
            return m.header if hasattr(m, "header") else m.markers[0].header
        return [m for m in self.got.get(name, []) if header(m).stamp.sec == sec]


def _image(node_clock_sec, encoding="rgb8", size=(160, 120)):
    rgb = np.random.default_rng(node_clock_sec).integers(0, 256, (size[1], size[0], 3), np.uint8)
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., 0]}.get(encoding, rgb)
    msg = fill_image(Image(), pixels, encoding if encoding in ("rgb8", "bgr8", "mono8")
                     else "rgb8")
    msg.header.stamp.sec = node_clock_sec
    msg.header.frame_id = "test_cam"
    return msg


def test_pipeline_outputs_and_bad_input(ros, model_dir):
    out = Outputs(ros)
    pub = ros.create_publisher(Image, "image", REL)
    info_pub = ros.create_publisher(CameraInfo, "camera_info", REL)
    edge_args = _args("mtl_split_edge", model=model_dir, device="cpu", input_qos="reliable")
    server_args = _args("mtl_split_server", model=model_dir, device="cpu", score_threshold=0.0,
                        max_detections=5, diagnostics_period=0.5)
    with python_process(edge_args) as edge, python_process(server_args) as server:
        assert wait_for(ros, lambda: ros.count_subscribers("image") > 0 and
                        ros.count_publishers("mtl_split/link_feedback") > 0, 90, (edge, server))
        # Outputs with no subscriber are skipped; wait until the server sees ours.
        assert wait_for(ros, lambda: all(ros.count_subscribers(f"mtl_split/{p}") > 0 for p in (
            "annotated", "points", "detections/markers", "segmentation/color")) and
            ros.count_subscribers("mtl_split/features") > 0, 10)
        info = CameraInfo(width=160, height=120)
        info.k = [100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 1.0]
        info.header.stamp.sec = 1
        time.sleep(0.5)  # discovery is asymmetric: let the edge match our publishers

        # 1. A good frame: every output arrives with its header, encoding and size. Sent until
        # the outputs carry our intrinsics (a sample sent before matching would be lost).
        names = ("detections", "segmentation", "depth", "camera_info", "points", "annotated",
                 "detections/markers", "segmentation/color")
        for _ in range(20):
            info_pub.publish(info)
            time.sleep(0.3)
            pub.publish(_image(1))
            if wait_for(ros, lambda: all(out.with_stamp(n, 1) for n in names + ("features",)) and
                        out.with_stamp("features", 1)[-1].camera_info.k[0] == 100.0, 3,
                        (edge, server)):
                break
        assert all(out.with_stamp(n, 1) for n in names), out.got.keys()
        seg, depth = out.with_stamp("segmentation", 1)[-1], out.with_stamp("depth", 1)[-1]
        assert (seg.encoding, depth.encoding) == ("mono8", "32FC1")
        assert (seg.width, seg.height) == (depth.width, depth.height) == (128, 96)
        cinfo = out.with_stamp("camera_info", 1)[-1]
        assert (cinfo.width, cinfo.height) == (128, 96) and cinfo.k[0] == pytest.approx(80.0)
        assert out.with_stamp("annotated", 1)[0].encoding == "rgb8"
        assert out.with_stamp("segmentation/color", 1)[0].encoding == "rgb8"
        assert all(m.header.frame_id == "test_cam" for n in names if n != "detections/markers"
                   for m in out.with_stamp(n, 1))
        d = np.frombuffer(depth.data, np.float32)
        assert (d > 0).all() and np.isfinite(d).all()
        feats = out.with_stamp("features", 1)[-1]
        assert feats.camera_info.k[0] == 100.0 and tuple(feats.shape) == (8, 6, 8)
        cloud = out.with_stamp("points", 1)[0]
        assert cloud.point_step == 16 and cloud.width > 0

        # 2. Bad images, each followed by a good one that must still be processed.
        bad = [_image(2), _image(3, size=(1, 1))]
        bad[0].encoding = "32FC1"
        bad[1].height = bad[1].width = 0
        for i, msg in enumerate(bad):
            pub.publish(msg)
            good = _image(10 + i, encoding=("bgr8", "mono8")[i])
            time.sleep(0.3)
            pub.publish(good)
            assert wait_for(ros, lambda i=i: out.with_stamp("detections", 10 + i), 60,
                            (edge, server)), f"good frame after bad frame {i} not processed"
        assert not out.with_stamp("detections", 2) and not out.with_stamp("detections", 3)
        assert wait_for(ros, lambda: any(int(v.get("rejected_image_not_colour", 0)) >= 1
                                         and int(v.get("rejected_image_size", 0)) >= 1
                                         for v in out.diag.values()), 15)

        # 3. Bad features straight to the server, each followed by a good packet.
        fpub = ros.create_publisher(SplitFeatures, "mtl_split/features", REL)
        assert wait_for(ros, lambda: fpub.get_subscription_count() > 0, 30, (edge, server))
        time.sleep(0.5)  # let the server's side of discovery match us too
        runner = EdgeRunner.from_path(model_dir, device="cpu")
        good = packet_to_msg(runner(np.zeros((96, 128, 3), np.uint8)))
        wrong = encode(np.random.default_rng(0).normal(size=(8, 7, 8)).astype(np.float32))
        cases = [("fingerprint", dict(model_fingerprint="0000000000000000")),
                 ("garbage payload", dict(data=array.array("B", b"\x28\xb5\x2f\xfd junk"))),
                 ("shape disagrees with payload", dict(shape=array.array("I", [8, 7, 8]))),
                 ("valid tensor of the wrong shape", dict(
                     shape=array.array("I", wrong.shape), scale=array.array("f", wrong.scale),
                     offset=array.array("f", wrong.offset),
                     data=array.array("B", wrong.data)))]
        for i, (reason, change) in enumerate(cases):
            bad_msg = packet_to_msg(runner(np.zeros((96, 128, 3), np.uint8)))
            for k, v in change.items():
                setattr(bad_msg, k, v)
            bad_msg.header.stamp.sec = 20 + i
            fpub.publish(bad_msg)
            time.sleep(0.3)
            good.header.stamp.sec = 30 + i
            fpub.publish(good)
            assert wait_for(ros, lambda i=i: out.with_stamp("detections", 30 + i), 60,
                            (edge, server)), f"good features after bad {reason} not processed"
            assert not out.with_stamp("detections", 20 + i)
        # 4. Metric depth follows the focal length in the features' camera_info: the same
        # features with fy = 200 px (no letterbox: 128x96 is the network input) give twice the
        # depth of the reference camera (100 px), which is also what no camera_info means.
        longer_lens = packet_to_msg(runner(np.zeros((96, 128, 3), np.uint8)))
        longer_lens.camera_info.k = [200.0, 0.0, 63.5, 0.0, 200.0, 47.5, 0.0, 0.0, 1.0]
        longer_lens.header.stamp.sec = 40
        fpub.publish(longer_lens)
        assert wait_for(ros, lambda: out.with_stamp("depth", 40), 60, (edge, server))
        depth_of = {s: np.frombuffer(out.with_stamp("depth", s)[-1].data, np.float32)
                    for s in (33, 40)}
        np.testing.assert_allclose(depth_of[40], depth_of[33] * 2.0, rtol=1e-4)
        assert wait_for(ros, lambda: any(
            # A declared shape that is not the model's is rejected before decoding (shape);
            # a garbage payload for the right shape fails in the codec (payload).
            int(v.get("rejected_fingerprint", 0)) >= 1 and int(v.get("rejected_payload", 0)) >= 1
            and int(v.get("rejected_shape", 0)) >= 2 for v in out.diag.values()), 15), out.diag
        log = stop(server)
    assert "dropped input (fingerprint" in log and "run edge and server with the same model" in log


def test_compressed_input_survives_corrupt_jpeg(ros, model_dir):
    out = Outputs(ros)
    pub = ros.create_publisher(CompressedImage, "image/compressed", REL)
    args = _args("mtl_split_edge", model=model_dir, device="cpu", input_qos="reliable",
                 input_transport="compressed")
    with python_process(args) as edge:
        assert wait_for(ros, lambda: pub.get_subscription_count() > 0, 90, (edge,))
        time.sleep(0.5)  # discovery is asymmetric: let the edge match us before we send
        corrupt = CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 not really a jpeg")
        corrupt.header.stamp.sec = 40
        pub.publish(corrupt)
        time.sleep(0.3)
        ok, buf = cv2.imencode(".jpg", np.full((60, 80, 3), 127, np.uint8))
        good = CompressedImage(format="jpeg", data=buf.tobytes())
        good.header.stamp.sec = 41
        pub.publish(good)
        assert wait_for(ros, lambda: out.with_stamp("features", 41), 60, (edge,))
        assert not out.with_stamp("features", 40)
        log = stop(edge)
    assert "corrupt or truncated" in log


@pytest.mark.parametrize("module, params, expected", [
    ("mtl_split_edge", {"device": "quantum"}, "parameter 'device'"),
    ("mtl_split_edge", {"split": "s99"}, "parameter 'split'"),
    ("mtl_split_edge", {"model": "/nonexistent/model"}, "parameter 'model'"),
    ("mtl_split_edge", {"input_transport": "carrier_pigeon"}, "parameter 'input_transport'"),
    ("mtl_split_server", {"tasks": "[flying]"}, "parameter 'tasks'"),
    ("mtl_split_server", {"score_threshold": 1.5}, "parameter 'score_threshold'"),
])
def test_bad_parameters_exit_with_a_clear_message(model_dir, module, params, expected):
    params = {"model": model_dir, **params}
    with python_process(_args(module, **params)) as proc:
        code = proc.wait(timeout=120)
        log = stop(proc)
    assert code == 2, log
    assert expected in log and "[FATAL]" in log


def test_one_server_for_two_robots(ros, model_dir):
    """Two edges in two namespaces, one server with both feature topics: outputs per robot."""
    outs = {r: Outputs(ros, prefix=f"/{r}/mtl_split/") for r in ("robot1", "robot2")}
    pubs = {r: ros.create_publisher(Image, f"/{r}/image", REL) for r in outs}
    edges = [_args("mtl_split_edge", model=model_dir, device="cpu", input_qos="reliable") +
             ["-r", f"__ns:=/{r}"] for r in outs]
    server = _args("mtl_split_server", model=model_dir, device="cpu", score_threshold=0.0,
                   feature_topics="['/robot1/mtl_split/features','/robot2/mtl_split/features']")
    with python_process(edges[0]) as e1, python_process(edges[1]) as e2, \
            python_process(server) as srv:
        procs = (e1, e2, srv)
        assert wait_for(ros, lambda: all(ros.count_subscribers(f"/{r}/image") > 0 and
                                         ros.count_publishers(f"/{r}/mtl_split/link_feedback") > 0
                                         for r in outs), 90, procs)
        ok = False
        for _ in range(20):  # resend: a frame sent before the edge matched us is lost
            for i, r in enumerate(outs):
                pubs[r].publish(_image(50 + i))
            ok = wait_for(ros, lambda: outs["robot1"].with_stamp("detections", 50) and
                          outs["robot2"].with_stamp("detections", 51), 3, procs)
            if ok:
                break
        assert ok, {k: list(v.got) for k, v in outs.items()} | {
            "logs": [stop(p)[-1500:] for p in procs]}
    # Each robot's outputs carry only its own frames.
    assert not outs["robot1"].with_stamp("detections", 51)
    assert not outs["robot2"].with_stamp("detections", 50)
