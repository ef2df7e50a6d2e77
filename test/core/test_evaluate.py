"""The one evaluation loop: the same frames scored from dataset-sized and from output-sized
predictions give the numbers of the metrics themselves."""

import json

import numpy as np
import pytest

from mtl_split_core.evaluate import frame_truth, headline, score
from mtl_split_core.metrics import DepthMetric, DetectionMetric, SegmentationMetric
from mtl_split_core.model import ModelConfig


def _frames(n=3):
    rng = np.random.default_rng(0)
    for _ in range(n):
        seg_gt = rng.integers(0, 11, (24, 32)).astype(np.uint8)
        depth_gt = rng.uniform(0.5, 9.0, (24, 32)).astype(np.float32)
        gt_boxes = np.array([[2, 3, 12, 15], [10, 4, 30, 20]], np.float32)
        pred = {"boxes": gt_boxes + rng.normal(0, 1.5, gt_boxes.shape).astype(np.float32),
                "class_ids": np.array([1, 3]), "scores": np.array([0.9, 0.4], np.float32),
                "segmentation": np.where(rng.random((12, 16)) < 0.7, seg_gt[::2, ::2], 0),
                "depth": depth_gt[::2, ::2] * rng.uniform(0.8, 1.2, (12, 16))}
        yield pred, {"boxes": gt_boxes, "labels": np.array([1, 2]), "seg": seg_gt,
                     "depth": depth_gt}


def test_score_equals_the_metrics_with_truth_resized_nearest():
    import cv2
    got = score(_frames(), ModelConfig())
    det, seg, dep = DetectionMetric(7), SegmentationMetric(11), DepthMetric()
    for p, t in _frames():
        det.update(p["boxes"], p["scores"], p["class_ids"], t["boxes"], t["labels"])
        seg.update(p["segmentation"], cv2.resize(t["seg"], (16, 12),
                                                 interpolation=cv2.INTER_NEAREST))
        dep.update(p["depth"], cv2.resize(t["depth"], (16, 12),
                                          interpolation=cv2.INTER_NEAREST))
    expected = {"detection": det.compute(), "segmentation": seg.compute(),
                "depth": dep.compute()}
    assert json.dumps(got) == json.dumps(expected)  # exact, NaN for classes without truth
    assert headline(got)["mIoU"] == seg.compute()["mIoU"]


def test_score_only_the_tasks_asked_and_truth_per_frame():
    got = score(_frames(), ModelConfig(), tasks=("depth",))
    assert set(got) == {"depth"} and got["depth"]["frames"] == 3
    h = headline(got)
    assert h["delta1"] == got["depth"]["delta1"] and h["mAP50"] is None
    data = {"images": np.zeros((2, 4, 4, 3)), "boxes": [np.zeros((0, 4))] * 2, "k": []}
    assert set(frame_truth(data, 1)) == {"images", "boxes"}
    with pytest.raises(KeyError, match="registered"):
        score(_frames(), ModelConfig(), tasks=("normals",))


def test_frames_without_a_tasks_label_are_left_out_of_that_metric_only():
    frames = list(_frames(3))
    flagged = [(p, {**t, "has_depth": i != 1, "has_detection": True})
               for i, (p, t) in enumerate(frames)]
    got = score(flagged, ModelConfig())
    kept = score([frames[0], frames[2]], ModelConfig(), tasks=("depth",))
    assert got["depth"] == kept["depth"] and got["depth"]["frames"] == 2
    assert got["segmentation"] == score(frames, ModelConfig())["segmentation"]


def test_unknown_intrinsics_evaluate_as_the_reference_camera():
    import torch

    from mtl_split_core.evaluate import evaluate
    from mtl_split_core.model import MultiTaskSplitNet
    from support.tiny_data import tiny_dataset

    torch.manual_seed(0)
    model = MultiTaskSplitNet(ModelConfig(backbone="mobilenetv3_small", input_size=(96, 64),
                                          depth_reference_focal=100.0)).eval()
    data = tiny_dataset(2)
    data["k"] = np.tile(np.array([100.0, 0, 48, 0, 100.0, 32, 0, 0, 1]), (2, 1))
    known = evaluate(model, data, codec=None)["depth"]
    data["k"] = np.full((2, 9), np.nan)
    assert evaluate(model, data, codec=None)["depth"] == known
    data["k"][:, 4] = 200.0  # a longer focal length: twice the depth, other numbers
    assert evaluate(model, data, codec=None)["depth"] != known


def _tiny_net_and_frames(n: int):
    """An untrained 64x48 model and ``n`` smooth labelled frames."""
    import torch

    from mtl_split_core.model import MultiTaskSplitNet
    torch.manual_seed(0)
    net = MultiTaskSplitNet(ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48),
                                        bottlenecks={"s16": 8})).eval()
    yy, xx = np.mgrid[0:48, 0:64]
    images = np.stack([np.stack([xx * 4, yy * 5, (xx + yy + 7 * i) % 256], -1)
                       for i in range(n)]).astype(np.uint8)
    return net, {"images": images, "depth": np.full((n, 48, 64), 2.0, np.float32),
                 "seg": np.zeros((n, 48, 64), np.int64),
                 "boxes": [np.array([[4, 4, 20, 20]], np.float32)] * n,
                 "labels": [np.array([1])] * n}


def test_split_input_scores_the_frames_through_the_image_codec():
    """``evaluate`` at split input = the float model on the frames an upload decodes to, and
    the bytes per frame are the image files'."""
    from mtl_split_core.evaluate import evaluate
    from mtl_split_core.image_codec import round_trip
    net, data = _tiny_net_and_frames(3)
    images = data["images"]
    got = evaluate(net, data, split="input", codec="webp-q60/1", batch_size=2)
    decoded, sizes = round_trip(images, "webp-q60/1")
    assert not np.array_equal(decoded, images)  # lossy: what the server sees differs
    expected = evaluate(net, {**data, "images": decoded}, batch_size=2)
    assert (got["split"], got["codec"]) == ("input", "webp-q60/1")
    assert got["bytes_per_frame"] == np.mean(sizes)
    assert json.dumps(got["depth"]) == json.dumps(expected["depth"])
    assert json.dumps(got["segmentation"]) == json.dumps(expected["segmentation"])


def test_a_temporal_codec_codes_each_sequence_as_a_stream():
    """Keyframe every frame: the base codec's metrics and bytes plus the 15-byte header; a
    long interval: keyframes where the sequence id changes, so each sequence starts whole."""
    from mtl_split_core.evaluate import evaluate
    net, data = _tiny_net_and_frames(4)
    images = data["images"]
    plain = evaluate(net, data, codec="q4-zstd/1", batch_size=3)
    every = evaluate(net, data, codec="t1-s0-q4-zstd/1", batch_size=3, groups=[0, 0, 1, 1])
    assert every["bytes_per_frame"] == pytest.approx(plain["bytes_per_frame"] + 15)
    assert json.dumps(every["depth"]) == json.dumps(plain["depth"])
    assert json.dumps(every["segmentation"]) == json.dumps(plain["segmentation"])
    # A still scene: after each sequence's keyframe only header and tile bitmap are sent.
    still = {**data, "images": np.repeat(images[:1], 4, 0)}
    streamed = evaluate(net, still, codec="t30-s20-q4-zstd/1", batch_size=3,
                        groups=[0, 0, 1, 1])
    key = evaluate(net, still, codec="q4-zstd/1", batch_size=3)["bytes_per_frame"] + 15
    assert streamed["bytes_per_frame"] == pytest.approx((2 * key + 2 * (15 + 1)) / 4)
