"""Detection targets decode back to their boxes; the focal loss prefers correct heatmaps."""

import numpy as np
import torch

from mtl_split_core.tasks import PostprocessContext
from mtl_split_core.tasks.detection import (
    DetectionTask,
    decode_detections,
    detection_targets,
    focal_loss,
    gaussian_radius,
)

BOXES = np.array([[16.0, 8.0, 64.0, 40.0], [70.0, 30.0, 90.0, 62.0]], np.float32)
LABELS = np.array([2, 0])


def _perfect_outputs(t):
    """Logits that reproduce the targets exactly where they are 1 (centres)."""
    heat = torch.from_numpy(t["heatmap"]).clamp(1e-6, 1 - 1e-6)
    return {"heatmap": torch.log(heat / (1 - heat))[None],
            "size": torch.from_numpy(t["size"])[None],
            "offset": torch.from_numpy(t["offset"])[None]}


def test_targets_decode_back_to_the_boxes():
    t = detection_targets(BOXES, LABELS, (8, 12), num_classes=3)
    assert t["mask"].sum() == 2 and t["heatmap"].max() == 1.0
    det = decode_detections(_perfect_outputs(t), score_threshold=0.5)[0]
    order = torch.argsort(det["class_ids"], descending=True)
    assert det["class_ids"][order].tolist() == [2, 0]
    assert torch.allclose(det["boxes"][order], torch.from_numpy(BOXES), atol=1e-3)


def test_decode_maps_to_source_pixels_and_clips():
    t = detection_targets(BOXES, LABELS, (8, 12), num_classes=3)
    # Source was 2x larger and letterboxed down with a 4 px top offset.
    det = decode_detections(_perfect_outputs(t), transform=(0.5, 0.5, 0.0, 4.0),
                            score_threshold=0.5, source_size=(150, 100))[0]
    expected = (BOXES - np.array([0, 4, 0, 4])) / 0.5
    expected[:, 0::2] = expected[:, 0::2].clip(0, 150)
    expected[:, 1::2] = expected[:, 1::2].clip(0, 100)
    got = det["boxes"][torch.argsort(det["class_ids"], descending=True)].numpy()
    assert np.allclose(got, expected, atol=1e-2)


def test_decode_respects_threshold_and_max_detections():
    out = {"heatmap": torch.full((1, 3, 8, 12), -10.0), "size": torch.zeros(1, 2, 8, 12),
           "offset": torch.zeros(1, 2, 8, 12)}
    assert len(decode_detections(out, score_threshold=0.3)[0]["boxes"]) == 0
    out["heatmap"][0, 1, ::2, ::2] = 5.0  # 24 isolated peaks
    assert len(decode_detections(out, score_threshold=0.3, max_detections=10)[0]["boxes"]) == 10


def test_gaussian_radius_grows_with_box():
    assert 0 < gaussian_radius(2, 2) < gaussian_radius(8, 8)


def test_focal_loss_prefers_correct_heatmaps():
    t = torch.from_numpy(detection_targets(BOXES, LABELS, (8, 12), 3)["heatmap"])[None]
    good = torch.where(t == 1, torch.tensor(5.0), torch.tensor(-5.0))
    assert focal_loss(good, t) < focal_loss(torch.zeros_like(t), t) < focal_loss(-good, t)


def test_cells_inside_ignore_regions_add_no_background_loss():
    from mtl_split_core.tasks.detection import ignore_cells

    cells = ignore_cells(np.array([[0.0, 0.0, 32.0, 16.0]], np.float32), (8, 12))
    assert cells.sum() == 4 * 2 and cells[:2, :4].all()  # centres at 4, 12, 20, 28 / 4, 12
    t = detection_targets(BOXES, LABELS, (8, 12), 3,
                          ignore_boxes=np.array([[0.0, 0.0, 32.0, 16.0]], np.float32))
    assert (t["ignore"] == cells).all()
    heat = torch.from_numpy(t["heatmap"])[None]
    ignore = torch.from_numpy(t["ignore"])[None]
    fire = torch.where(heat == 1, torch.tensor(5.0), torch.tensor(-5.0))
    fire_in_region = fire.clone()
    fire_in_region[:, :, 0, 0] = 5.0  # a confident "object" in the ignore region
    assert focal_loss(fire_in_region, heat) > focal_loss(fire, heat)
    assert torch.isclose(focal_loss(fire_in_region, heat, ignore=ignore),
                         focal_loss(fire, heat, ignore=ignore))
    # An object centre inside a region still counts as a positive.
    miss = fire.clone()
    miss[heat == 1] = -5.0
    assert focal_loss(miss, heat, ignore=torch.ones_like(ignore)) > focal_loss(
        fire, heat, ignore=torch.ones_like(ignore))


def _score(prediction, truth):
    from mtl_split_core.model import ModelConfig
    from mtl_split_core.tasks import get_task

    metric = get_task("detection").metric(ModelConfig())
    metric.update(prediction, truth)
    return metric.compute()


def test_detections_in_ignore_regions_are_neither_true_nor_false_positives():
    gt = {"boxes": np.array([[10.0, 10.0, 30.0, 30.0]], np.float32), "labels": np.array([0])}
    hit = [10.0, 10.0, 30.0, 30.0]
    in_region = [60.0, 10.0, 70.0, 20.0]   # IoF 1 with the region, IoU 0.25
    stray = [100.0, 100.0, 110.0, 110.0]
    # The stray detection scores highest: a false positive ranked first halves the precision.
    pred = {"boxes": np.array([stray, in_region, hit], np.float32),
            "scores": np.array([0.9, 0.95, 0.5], np.float32), "class_ids": np.array([0, 0, 0])}
    region = np.array([[55.0, 5.0, 75.0, 25.0]], np.float32)
    without = _score({**pred, "boxes": pred["boxes"][[0, 2]], "scores": pred["scores"][[0, 2]],
                      "class_ids": pred["class_ids"][[0, 2]]}, gt)
    ignored = _score(pred, {**gt, "ignore_boxes": region})
    counted = _score(pred, {**gt, "ignore_boxes": np.zeros((0, 4), np.float32)})
    assert ignored["mAP50"] == without["mAP50"] == 0.5  # the region's detection is gone
    assert counted["mAP50"] < ignored["mAP50"]          # as a false positive it costs
    # A detection that matches its ground truth stays a true positive inside a region.
    everywhere = np.array([[0.0, 0.0, 200.0, 200.0]], np.float32)
    only_hit = {"boxes": np.array([hit], np.float32), "scores": np.array([0.5], np.float32),
                "class_ids": np.array([0])}
    assert _score(only_hit, {**gt, "ignore_boxes": everywhere})["mAP50"] == 1.0


def test_ignore_matching_needs_half_the_detection_inside_the_region():
    from mtl_split_core.tasks.detection import box_iof, in_ignore_regions

    region = np.array([[0.0, 0.0, 10.0, 10.0]])
    boxes = np.array([[5.0, 0.0, 15.0, 10.0], [6.0, 0.0, 16.0, 10.0]])
    assert box_iof(boxes, region)[:, 0].tolist() == [0.5, 0.4]
    got = in_ignore_regions(boxes, np.array([0.9, 0.8]), np.array([1, 1]),
                            np.zeros((0, 4)), np.zeros(0, np.int64), region)
    assert got.tolist() == [True, False]


def test_the_device_path_keeps_what_the_threshold_keeps():
    """postprocess_device leaves the top k and a count on the device; finish cuts each frame's
    rows to its count: the same detections as the boolean mask, frame by frame."""
    g = torch.Generator().manual_seed(3)
    out = {"heatmap": torch.randn((3, 3, 8, 12), generator=g) * 3,
           "size": torch.randn((3, 2, 8, 12), generator=g),
           "offset": torch.rand((3, 2, 8, 12), generator=g)}
    out["heatmap"][1] = -20.0  # a frame without a detection
    context = PostprocessContext(transform=(0.5, 0.5, 1.0, 2.0), source_size=(190, 90),
                                 score_threshold=0.6, max_detections=20)
    task = DetectionTask()
    results = task.postprocess(out, context)
    expected = decode_detections(out, context.transform, 0.6, 20, context.source_size)
    assert len(results[1]["boxes"]) == 0 and len(results[0]["boxes"]) > 0
    for got, want in zip(results, expected):
        assert set(got) == {"boxes", "class_ids", "scores"}
        for name in got:
            np.testing.assert_array_equal(got[name], want[name].numpy())
