"""backend=onnxruntime through the real nodes: an edge + server pair on the ONNX export and a
pair on torch, side by side over DDS, give the same detections, segmentation and depth; a
mismatched export stops a node at start-up with one line naming the file and fingerprint."""

import json
import time

import numpy as np
import pytest
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import SplitFeatures
from mtl_split_core.codec import decode
from mtl_split_core.export import EXPORT_CARD, export_model
from mtl_split_core.model import load_model
from mtl_split_ros.features_msg import msg_to_packet
from mtl_split_ros.image_msg import fill_image, image_to_array
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process, stop
from support.ros_nodes import node_args, wait_for

pytestmark = pytest.mark.ros
REL = qos_from_name("reliable", depth=10)
BACKENDS = ("torch", "onnxruntime")
OUTPUTS = {"detections": Detection2DArray, "segmentation": Image, "depth": Image,
           "features": SplitFeatures}


@pytest.fixture(scope="module")
def exported_model(model_dir):
    """The tiny model with every split exported to its onnx/ folder (the default place)."""
    model, card = load_model(model_dir)
    frames = [np.random.default_rng(i).integers(0, 256, (96, 128, 3), np.uint8)
              for i in range(2)]
    export_model(model, card, f"{model_dir}/onnx", frames=frames)
    return model_dir


def _in_namespace(args, namespace):
    return [*args, "-r", f"__ns:=/{namespace}"]


def test_onnxruntime_nodes_match_torch_nodes(ros_node, exported_model):
    ros = ros_node
    got = {b: {name: {} for name in OUTPUTS} for b in BACKENDS}
    subs = [ros.create_subscription(
        t, f"/{b}/mtl_split/{name}",
        lambda msg, b=b, name=name: got[b][name].setdefault(msg.header.stamp.sec, msg), REL)
        for b in BACKENDS for name, t in OUTPUTS.items()]
    pubs = {b: ros.create_publisher(Image, f"/{b}/image", REL) for b in BACKENDS}
    common = {"model": exported_model, "device": "cpu"}
    # Split computing from the first frame (no local start, no fallback): this test compares
    # the two backends' features and outputs, which a slow first answer must not turn local.
    edge = {**common, "fallback_after": 0.0}
    with python_process(_in_namespace(node_args("mtl_split_edge", backend="torch", **edge),
                                      "torch")) as e0, \
            python_process(_in_namespace(node_args("mtl_split_server", backend="torch",
                                                   score_threshold=0.0, max_detections=5,
                                                   **common), "torch")) as s0, \
            python_process(_in_namespace(node_args("mtl_split_edge", backend="onnxruntime",
                                                   **edge), "onnxruntime")) as e1, \
            python_process(_in_namespace(node_args("mtl_split_server", backend="onnxruntime",
                                                   score_threshold=0.0, max_detections=5,
                                                   **common), "onnxruntime")) as s1:
        procs = [e0, s0, e1, s1]
        assert wait_for(ros, lambda: all(
            ros.count_subscribers(f"/{b}/image") > 0 and
            ros.count_publishers(f"/{b}/mtl_split/depth") > 0 for b in BACKENDS), 120, procs)
        rng = np.random.default_rng(3)
        stamps = (1, 2, 3)
        for sec in stamps:
            rgb = rng.integers(0, 256, (120, 160, 3), np.uint8)
            msg = fill_image(Image(), rgb, "rgb8")
            msg.header.stamp.sec = sec
            # Resent until both pipelines answered (a sample sent before matching is lost).
            for _ in range(30):
                for b in BACKENDS:
                    if sec not in got[b]["depth"]:
                        pubs[b].publish(msg)
                if wait_for(ros, lambda sec=sec: all(sec in got[b][n] for b in BACKENDS
                                                     for n in OUTPUTS), 3, procs):
                    break
            assert all(sec in got[b][n] for b in BACKENDS for n in OUTPUTS), \
                {b: {n: sorted(v) for n, v in got[b].items()} for b in BACKENDS}
    for sub in subs:
        ros.destroy_subscription(sub)

    for sec in stamps:
        torch_out, ort_out = (got[b] for b in BACKENDS)
        # The features: the same codes but where a value sits on a rounding boundary.
        packets = [msg_to_packet(o["features"][sec]) for o in (torch_out, ort_out)]
        codes = [np.rint((decode(p.tensor) - np.reshape(p.tensor.offset, (-1, 1, 1)))
                         / np.reshape(p.tensor.scale, (-1, 1, 1))) for p in packets]
        assert np.abs(codes[0] - codes[1]).max() <= 1 and np.mean(codes[0] != codes[1]) < 0.01
        depth = [image_to_array(o["depth"][sec]) for o in (torch_out, ort_out)]
        assert depth[0].shape == depth[1].shape == (96, 128)
        rel = np.abs(depth[1] - depth[0]) / depth[0]
        assert np.median(rel) < 1e-3 and rel.max() < 0.05, (np.median(rel), rel.max())
        seg = [image_to_array(o["segmentation"][sec]) for o in (torch_out, ort_out)]
        assert np.mean(seg[0] != seg[1]) < 0.01
        dets = [o["detections"][sec].detections for o in (torch_out, ort_out)]
        assert len(dets[0]) == len(dets[1]) == 5
        scores = [sorted(d.results[0].hypothesis.score for d in ds) for ds in dets]
        np.testing.assert_allclose(scores[1], scores[0], atol=0.02)


@pytest.mark.parametrize("module", ["mtl_split_edge", "mtl_split_server"])
def test_a_mismatched_export_stops_the_node_with_one_line(exported_model, tmp_path, module):
    folder = tmp_path / "onnx"
    folder.mkdir()
    card = json.loads(open(f"{exported_model}/onnx/{EXPORT_CARD}").read())
    card["model_fingerprint"] = "0000000000000000"
    (folder / EXPORT_CARD).write_text(json.dumps(card))
    expected = json.loads(open(f"{exported_model}/card.json").read())["fingerprint"]
    args = node_args(module, model=exported_model, device="cpu", backend="onnxruntime",
                     onnx_dir=str(folder))
    start = time.time()
    with python_process(args) as proc:
        code = proc.wait(timeout=120)
        log = stop(proc)
    assert code == 2, log
    line = next(ln for ln in log.splitlines() if "parameter 'onnx_dir'" in ln)
    assert str(folder / EXPORT_CARD) in line and expected in line and "[FATAL]" in line, log
    assert "Traceback" not in log and time.time() - start < 120
