"""The one outputs path: the live server node (a process, over DDS) and `mtl-split process`
(rosbags, no rclpy) give field-for-field equal messages for one frame; card-driven colours."""

import dataclasses
import time

import numpy as np
import pytest
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from bag_factory import T, header, write_bag
from bag_factory import image as bag_image
from mtl_split_core.bags import open_bag, typestore
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import ServerRunner
from mtl_split_core.tasks import OutputSpec, Task, register_task, unregister_task
from mtl_split_core.viz import class_palette
from mtl_split_ros.features_msg import packet_to_msg
from mtl_split_ros.image_msg import ImageDecodeError, image_to_array, image_to_rgb
from mtl_split_ros.msg_factory import BagMessages, RclpyMessages
from mtl_split_ros.outputs import (
    DEFAULT_OUTPUT_TYPES,
    KINDS,
    OutputStyle,
    assemble,
    detection_array,
    detection_arrays,
    each_output,
    features_topic,
    image,
    latched,
    output_prefix,
    output_types,
)
from mtl_split_ros.qos import qos_from_name
from mtl_split_tools.process import process_bag
from support.procs import python_process, stop

SERVER = "from mtl_split_server.node import main; import sys; sys.exit(main())"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
FY = 200.0
STORE = typestore()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, MultiTaskSplitNet(ModelConfig(
        name="tiny", backbone="mobilenetv3_small", input_size=(64, 48),
        bottlenecks={"s16": 4}, depth_reference_focal=100.0)).eval())
    return str(path)


def _camera_info_fields(i):
    return dict(height=60, width=80, distortion_model="plumb_bob", d=np.zeros(5),
                k=np.array([FY, 0, 40, 0, FY, 30, 0, 0, 1], float), r=np.eye(3).ravel(),
                p=np.array([FY, 0, 40, 0, 0, FY, 30, 0, 0, 0, 1, 0], float))


def _plain(value):
    """A message (rclpy or rosbags) as nested dicts / lists / numpy arrays, to compare."""
    if hasattr(value, "get_fields_and_field_types"):
        return {n: _plain(getattr(value, n)) for n in value.get_fields_and_field_types()}
    if hasattr(value, "__msgtype__"):  # rosbags: its fields, not its constants
        return {n: _plain(getattr(value, n)) for n, _ in STORE.fielddefs[value.__msgtype__][1]}
    if isinstance(value, (list, tuple)) and value and not np.isscalar(value[0]):
        return [_plain(v) for v in value]
    if isinstance(value, (str, bytes)) or np.isscalar(value):
        return value
    return np.asarray(value)


def _assert_equal(live, bag, path):
    if isinstance(bag, dict):
        assert live.keys() == bag.keys(), path
        for k in bag:
            _assert_equal(live[k], bag[k], f"{path}.{k}")
    elif isinstance(bag, list):
        assert isinstance(live, list) and len(live) == len(bag), path
        for i, (a, b) in enumerate(zip(live, bag)):
            _assert_equal(a, b, f"{path}[{i}]")
    elif isinstance(bag, np.ndarray) or isinstance(live, np.ndarray):
        a, b = np.asarray(live), np.asarray(bag)
        assert a.shape == b.shape, path
        if a.dtype == np.uint8 or b.dtype == np.uint8:
            assert a.astype(np.uint8).tobytes() == b.astype(np.uint8).tobytes(), path
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert live == bag, f"{path}: {live!r} != {bag!r}"


@pytest.mark.ros
def test_live_server_and_process_publish_equal_messages(tmp_path, model_dir):
    frame = bag_image(0)
    info = T["sensor_msgs/msg/CameraInfo"](
        header=header(0), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                  do_rectify=False), **_camera_info_fields(0))
    bag = write_bag(tmp_path / "in", {"/cam/camera_info": ("sensor_msgs/msg/CameraInfo",
                                                           [info]),
                                      "/cam/image_raw": ("sensor_msgs/msg/Image", [frame])})
    process_bag(bag, tmp_path / "out", model=model_dir, device="cpu", score_threshold=0.0,
                progress=False)
    with open_bag(tmp_path / "out" / "outputs") as reader:
        from_bag = {c.topic: reader.deserialize(raw, c.msgtype)
                    for c, _, raw in reader.messages()}
    prefix = output_prefix(features_topic("/cam/image_raw"))
    assert prefix == "/cam/mtl_split/"
    assert set(from_bag) == {prefix + s for s in DEFAULT_OUTPUT_TYPES}
    assert len(from_bag[prefix + "detections"].detections) > 0

    # The same packet, sent to a live server node as the edge would send it.
    packet = EdgeRunner.from_path(model_dir, device="cpu")(image_to_rgb(frame))
    f = RclpyMessages()
    hdr = f.make("std_msgs/msg/Header", frame_id="cam",
                 stamp=f.make("builtin_interfaces/msg/Time", sec=100, nanosec=0))
    features = packet_to_msg(packet, hdr, f.make("sensor_msgs/msg/CameraInfo", header=hdr,
                                                 **_camera_info_fields(0)))
    rclpy.init()
    node = rclpy.create_node("outputs_test")
    qos = qos_from_name("reliable", depth=10)
    got = {}
    once = latched(OutputStyle.from_card(EdgeRunner.from_path(model_dir, device="cpu").card))
    for suffix, msgtype in DEFAULT_OUTPUT_TYPES.items():
        node.create_subscription(f.message_class(msgtype), prefix + suffix,
                                 lambda m, s=suffix: got.setdefault(s, m),
                                 LATCHED if suffix in once else qos)
    pub = node.create_publisher(f.message_class("mtl_split/msg/SplitFeatures"),
                                prefix + "features", qos)
    # Eager like process_bag: this compares the outputs path, not TorchScript's last bits.
    args = ["-c", SERVER, "--ros-args", "-p", f"model:={model_dir}", "-p", "device:=cpu",
            "-p", "score_threshold:=0.0", "-p", f"feature_topics:=['{prefix}features']",
            "-p", "torchscript:=false"]
    try:
        with python_process(args) as server:
            deadline, last_sent = time.time() + 120, 0.0
            while len(got) < len(DEFAULT_OUTPUT_TYPES) and time.time() < deadline:
                assert server.poll() is None, stop(server)
                matched = pub.get_subscription_count() > 0 and all(
                    node.count_publishers(prefix + s) > 0 for s in DEFAULT_OUTPUT_TYPES)
                # Resend until every output came: the server publishes optional outputs
                # only once it has seen our subscriptions.
                if matched and time.time() - last_sent > 2.0:
                    pub.publish(features)
                    last_sent = time.time()
                rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert set(got) == set(DEFAULT_OUTPUT_TYPES), f"missing {set(DEFAULT_OUTPUT_TYPES) - set(got)}"
    for suffix in DEFAULT_OUTPUT_TYPES:
        live, bag = _plain(got[suffix]), _plain(from_bag[prefix + suffix])
        if suffix in once:  # published at start-up (live) / with the first frame (bag)
            live.pop("header"), bag.pop("header")
        _assert_equal(live, bag, suffix)
    # Not trivially equal: the frame has content and depth follows the camera_info.
    dets = got["detections"].detections
    assert dets and len(got["detections_3d"].detections) == len(dets)
    assert all(d.bbox.center.position.z > 0 for d in got["detections_3d"].detections)
    assert [c.class_name for c in got["label_info"].class_map] == list(
        EdgeRunner.from_path(model_dir, device="cpu").card["detection_classes"])
    # Every detection with a depth gets a cube and a label (cubes were once never published).
    namespaces = [m.ns for m in got["detections/markers"].markers[1:]]
    assert namespaces == ["detections", "labels"] * len(dets)
    assert got["camera_info"].k[4] == pytest.approx(FY * 48 / 60)
    assert len(got["points"].data) > 0


def _result(model_dir):
    edge = EdgeRunner.from_path(model_dir, device="cpu")
    server = ServerRunner(edge.model, edge.card, device="cpu", score_threshold=0.0)
    packet = edge(image_to_rgb(bag_image(1)))
    return packet, server(packet), edge.card


def test_detection_colours_come_from_the_cards_class_lists(model_dir):
    packet, result, card = _result(model_dir)
    # A card whose segmentation lists the things first and in another order than detection.
    det = list(card["detection_classes"])
    seg = [*reversed(det), "ground", "sky"]
    style = OutputStyle.from_card({**card, "segmentation_classes": seg})
    factory = BagMessages(STORE)
    out = assemble(result, T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="cam"),
        style, {"detections/markers"}, factory)
    assert set(out) == {"detections/markers"}
    cubes = [m for m in out["detections/markers"].markers if m.ns == "detections"]
    assert cubes
    palette = class_palette(len(seg))
    for cube in cubes:
        cid = int(result.class_ids[cube.id // 2])
        expected = palette[seg.index(det[cid])] / 255.0
        np.testing.assert_allclose([cube.color.r, cube.color.g, cube.color.b], expected)


def test_only_wanted_outputs_are_built(model_dir):
    packet, result, card = _result(model_dir)
    style = OutputStyle.from_card(card)
    factory = BagMessages(STORE)
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                   frame_id="cam")
    assert assemble(result, hdr, style, set(), factory) == {}
    both = assemble(result, hdr, style, {"depth", "annotated"}, factory)
    assert list(both) == ["depth", "annotated"]
    assert both["depth"].encoding == "32FC1" and both["annotated"].encoding == "rgb8"


def test_each_output_is_ready_before_the_next_is_built(model_dir, monkeypatch):
    """The server publishes each output as soon as it is built: the first declared one
    (detections) is handed over before the converter of the next (segmentation) runs."""
    _, result, card = _result(model_dir)
    style = OutputStyle.from_card(card)
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                   frame_id="cam")
    built: list[str] = []
    kind = KINDS["class_image"]
    monkeypatch.setitem(KINDS, "class_image", dataclasses.replace(
        kind, build=lambda frame, spec: built.append(spec.suffix) or kind.build(frame, spec)))
    outputs = each_output(result, hdr, style, {"detections", "segmentation"},
                          BagMessages(STORE))
    assert next(outputs)[0] == "detections" and built == []
    assert next(outputs)[0] == "segmentation" and built == ["segmentation"]
    assert next(outputs, None) is None


def test_serialized_outputs_are_the_messages(model_dir):
    """What the server publishes (``serialized=True``: CDR bytes for the kinds that have
    them) deserializes to the message each converter builds, for every output."""
    from rclpy.serialization import deserialize_message

    from mtl_split_ros.msg_factory import RclpyMessages as Factory
    _, result, card = _result(model_dir)
    style = OutputStyle.from_card(card)
    factory = Factory()
    hdr = factory.make("std_msgs/msg/Header", frame_id="cam_frame",
                       stamp=factory.make("builtin_interfaces/msg/Time", sec=3, nanosec=7))
    every = set(output_types(style))
    messages = assemble(result, hdr, style, every, factory)
    sent = assemble(result, hdr, style, every, factory, serialized=True)
    assert list(sent) == list(messages)
    as_bytes = {suffix for suffix, value in sent.items() if isinstance(value, bytes)}
    assert {"detections", "segmentation", "depth", "segmentation/color", "annotated"} <= \
        as_bytes
    for suffix in as_bytes:
        assert deserialize_message(sent[suffix], type(messages[suffix])) == messages[suffix]


class _HorizonTask(Task):
    """A test-only task: only what the ROS adapter reads (name, result field, outputs)."""

    name = "horizon"
    result_fields = ("horizon",)
    outputs = (OutputSpec("horizon", "mask_image"),
               OutputSpec("horizon/score", "float_image", field="horizon_score"))


class _BadKindTask(Task):
    name = "bad_kind"
    result_fields = ("x",)
    outputs = (OutputSpec("x", "hologram"),)


def test_a_registered_tasks_maps_are_published_without_touching_the_adapter(model_dir):
    packet, result, card = _result(model_dir)
    register_task(_HorizonTask())
    try:
        style = OutputStyle.from_card({**card, "tasks": [*card["tasks"], "horizon"]})
        types = output_types(style)
        assert types["horizon"] == types["horizon/score"] == "sensor_msgs/msg/Image"
        assert set(DEFAULT_OUTPUT_TYPES) < set(types)
        mask = (np.arange(48 * 64).reshape(48, 64) % 2).astype(np.uint8)
        score = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
        result.extra_fields.update(horizon=mask, horizon_score=score)
        hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                       frame_id="cam")
        out = assemble(result, hdr, style, types, BagMessages(STORE))
        assert out["horizon"].encoding == "mono8"
        np.testing.assert_array_equal(image_to_array(out["horizon"]), mask)
        assert out["horizon/score"].encoding == "32FC1"
        np.testing.assert_array_equal(image_to_array(out["horizon/score"]), score)
        assert out["horizon"].header.frame_id == "cam"
    finally:
        unregister_task("horizon")


def test_a_task_output_kind_without_a_message_is_refused_at_start(model_dir):
    _, _, card = _result(model_dir)
    register_task(_BadKindTask())
    try:
        with pytest.raises(ValueError, match="hologram"):
            OutputStyle.from_card({**card, "tasks": [*card["tasks"], "bad_kind"]})
    finally:
        unregister_task("bad_kind")


def test_topic_rule_for_image_topics_and_feature_topics():
    assert features_topic("/cam/image_raw") == "/cam/mtl_split/features"
    assert features_topic("/cam/image_raw/compressed") == "/cam/mtl_split/features"
    assert features_topic("/image") == "/mtl_split/features"
    assert output_prefix("/robot1/mtl_split/features") == "/robot1/mtl_split/"
    assert output_prefix("mtl_split/features") == "mtl_split/"
    with pytest.raises(ValueError):
        output_prefix("/cam/image")


@pytest.mark.parametrize("factory", [RclpyMessages(), BagMessages(STORE)],
                         ids=["rclpy", "rosbags"])
def test_converters_round_trip_with_either_factory(factory):
    hdr = factory.make("std_msgs/msg/Header", frame_id="cam")
    depth = np.random.default_rng(0).uniform(0.5, 9.0, (5, 7)).astype(np.float32)
    seg = np.arange(35, dtype=np.uint8).reshape(5, 7)
    np.testing.assert_array_equal(image_to_array(image(factory, hdr, depth, "32FC1")), depth)
    np.testing.assert_array_equal(image_to_array(image(factory, hdr, seg, "mono8")), seg)
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), np.uint8)
    np.testing.assert_array_equal(image_to_rgb(image(factory, hdr, rgb, "rgb8")), rgb)
    with pytest.raises(ImageDecodeError):
        image_to_array(image(factory, hdr, rgb, "rgb8"))
    boxes = np.array([[1.5, 2.0, 11.5, 22.0], [0, 0, 80, 60]], np.float32)
    msg = detection_array(factory, hdr, boxes, [2, 0], [0.9, 0.5])
    d = msg.detections[0]
    assert (d.results[0].hypothesis.class_id, d.bbox.center.position.x, d.bbox.size_y) == (
        "2", 6.5, 20.0)
    assert d.header.frame_id == msg.header.frame_id == "cam"
    back, ids, scores = detection_arrays(msg)
    np.testing.assert_array_equal(back, boxes)
    assert ids.tolist() == [2, 0] and scores.tolist() == pytest.approx([0.9, 0.5])


def test_switches_config_and_readme_follow_the_task_declarations():
    """publish_<suffix> parameters, config/server.yaml and the README's topic table are the
    declarations' (one place per fact: the tasks)."""
    import re
    from pathlib import Path

    import yaml

    from mtl_split_server.node import PARAMS
    from mtl_split_tools.cli import COMMANDS  # noqa: F401 - the tools import cleanly too

    root = Path(__file__).resolve().parents[2]
    style = OutputStyle.from_card({"tasks": ["detection", "segmentation", "depth"],
                                   "detection_classes": ["a"], "segmentation_classes": ["a"]})
    switches = {f"publish_{s.suffix.replace('/', '_')}" for s in style.outputs if s.optional}
    assert switches == {"publish_detections_markers", "publish_segmentation_color",
                        "publish_points", "publish_annotated"}
    assert switches == {p.name for p in PARAMS if p.name.startswith("publish_")}
    shipped = yaml.safe_load((root / "config" / "server.yaml").read_text())
    assert switches <= set(shipped["/**"]["ros__parameters"])
    row = next(line for line in (root / "README.md").read_text().splitlines()
               if line.startswith("| `server_node`"))
    listed = set(re.findall(r"`mtl_split/([a-z0-9_/]+)`", row.split("|")[3]))
    assert listed == {*DEFAULT_OUTPUT_TYPES, "link_feedback"}


def test_a_converter_that_raises_costs_its_own_output_only(model_dir, monkeypatch):
    from mtl_split_ros import outputs

    packet, result, card = _result(model_dir)
    style = OutputStyle.from_card(card)

    def broken(frame, spec):
        raise FloatingPointError("bad frame")

    monkeypatch.setitem(outputs.KINDS, "point_cloud",
                        dataclasses.replace(outputs.KINDS["point_cloud"], build=broken))
    failed = []
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                   frame_id="cam")
    out = assemble(result, hdr, style, set(DEFAULT_OUTPUT_TYPES), BagMessages(STORE),
                   on_error=lambda suffix, err: failed.append((suffix, type(err).__name__)))
    assert failed == [("points", "FloatingPointError")]
    assert {"detections", "depth", "segmentation", "annotated"} <= set(out)
    assert "points" not in out and "label_info" not in out  # (latched: published once)
    with pytest.raises(FloatingPointError):
        assemble(result, hdr, style, {"points"}, BagMessages(STORE))


def test_vision_messages_carry_source_pixels_the_header_and_the_camera_frame(model_dir):
    from mtl_split_core.geometry import Intrinsics, box_to_3d
    from mtl_split_ros.outputs import detection_3d_array, label_info

    f = BagMessages(STORE)
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=3, nanosec=4),
                                   frame_id="cam_optical")
    boxes = np.array([[10, 20, 30, 60], [0, 0, 5, 5]], np.float32)
    camera = Intrinsics(100.0, 100.0, 40.0, 30.0, 80, 60)
    msg = detection_3d_array(f, hdr, boxes, [1, 0], [0.8, 0.4], [2.5, 0.0], camera)
    assert len(msg.detections) == 1  # the box without a depth has no place in 3D
    d = msg.detections[0]
    center, size = box_to_3d(boxes[0], 2.5, camera)
    assert [d.bbox.center.position.x, d.bbox.center.position.y,
            d.bbox.center.position.z] == pytest.approx(list(center))
    assert d.bbox.size.x == pytest.approx(size[0]) and d.header.frame_id == "cam_optical"
    assert (d.results[0].hypothesis.class_id, d.results[0].hypothesis.score) == ("1", 0.8)
    assert d.results[0].pose.pose.position.z == pytest.approx(2.5)
    info = label_info(f, hdr, ["person", "car"])
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, "person"), (1, "car")]
    for m, t in ((msg, "vision_msgs/msg/Detection3DArray"),
                 (info, "vision_msgs/msg/LabelInfo")):
        # Compared field by field: rosbags' dataclass == cannot compare numpy fields.
        _assert_equal(_plain(STORE.deserialize_cdr(STORE.serialize_cdr(m, t), t)), _plain(m), t)
