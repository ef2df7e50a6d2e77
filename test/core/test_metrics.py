"""Metrics against hand-computed cases."""

import math

import numpy as np

from mtl_split_core.metrics import DepthMetric, DetectionMetric, SegmentationMetric, box_iou


def test_box_iou_hand_computed():
    # [0,0,2,2] vs [1,1,3,3]: intersection 1, union 4 + 4 - 1 = 7.
    assert math.isclose(box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3]])[0, 0], 1 / 7)


def test_perfect_detections_give_ap_one():
    m = DetectionMetric(2)
    gt = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], float)
    m.update(gt, [0.9, 0.8], [0, 1], gt, [0, 1])
    r = m.compute()
    assert r["mAP50"] == 1.0 and r["mAP50_95"] == 1.0


def test_duplicate_is_a_false_positive_and_ap_hand_computed():
    # One GT; predictions: a duplicate at 0.9 (matches), another copy at 0.8 (FP: GT taken),
    # a miss elsewhere. Precision/recall: (1, 1), (0.5, 1), (1/3, 1) -> envelope 1 at every
    # recall point -> AP = 1. Now a second GT never found: recall stops at 0.5 -> 51/101.
    m = DetectionMetric(1)
    gt = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float)
    preds = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [100, 100, 110, 110]], float)
    m.update(preds, [0.9, 0.8, 0.7], [0, 0, 0], gt, [0, 0])
    assert math.isclose(m.compute()["mAP50"], 51 / 101)


def test_iou_threshold_and_empty_cases():
    m = DetectionMetric(1)
    # IoU of [0,0,10,10] with [0,0,10,7] is 0.7: counts at 0.5..0.7, not at 0.75..0.95.
    m.update([[0, 0, 10, 7]], [0.9], [0], [[0, 0, 10, 10]], [0])
    ap = m.ap(0)
    assert (ap[:5] == 1.0).all() and (ap[5:] == 0.0).all()
    empty = DetectionMetric(2)
    empty.update(np.zeros((0, 4)), [], [], [[0, 0, 5, 5]], [1])
    assert empty.compute()["mAP50"] == 0.0 and math.isnan(empty.ap(0)[0])


def test_segmentation_confusion_hand_computed():
    m = SegmentationMetric(3)
    target = np.array([[0, 0, 1, 1], [255, 1, 1, 0]])
    pred = np.array([[0, 1, 1, 1], [2, 1, 0, 0]])
    m.update(pred, target)
    r = m.compute()
    # class 0: tp 2 (of gt 3), pred 0 three times -> union 3 + 3 - 2 = 4 -> 0.5
    # class 1: tp 3 (gt 4), pred 1 four times -> union 4 + 4 - 3 = 5 -> 0.6
    # class 2: absent from both (the 2 fell on an ignored pixel) -> NaN, left out.
    assert np.allclose(r["IoU_per_class"][:2], [0.5, 0.6]) and math.isnan(r["IoU_per_class"][2])
    assert math.isclose(r["mIoU"], 0.55) and math.isclose(r["pixel_accuracy"], 5 / 7)


def test_depth_hand_computed():
    m = DepthMetric()
    m.update(np.array([1.0, 2.0, 3.0, 9.0]), np.array([1.0, 1.0, 3.0, 0.0]))
    r = m.compute()
    assert math.isclose(r["abs_rel"], 1 / 3)            # (0 + 1 + 0) / 3
    assert math.isclose(r["rmse"], math.sqrt(1 / 3))     # sqrt((0 + 1 + 0) / 3)
    # ratio 2 for the middle pixel is above 1.25^3 = 1.95, so it fails every delta.
    assert math.isclose(r["delta1"], 2 / 3) and math.isclose(r["delta3"], 2 / 3)
