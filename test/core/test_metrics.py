"""Metrics against hand-computed cases (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_split_core.metrics import (
    IOU_THRESHOLDS,
    RECALL_POINTS,
    DepthMetric,
    DetectionMetric,
    SegmentationMetric,
    average_precision,
    box_iou,
)

# ---------------------------------------------------------------- boxes


def test_box_iou_hand_computed():
    a = [[0, 0, 2, 2]]
    b = [[1, 1, 3, 3],     # intersection 1, union 4 + 4 - 1 = 7
         [0, 0, 2, 2],     # identical
         [2, 0, 4, 2],     # touching edge: intersection 0
         [1, 1, 1, 5],     # zero width: area 0, IoU 0 (not NaN)
         [0, 0, 2, 1]]     # inside: 2 / 4
    assert np.allclose(box_iou(a, b), [[1 / 7, 1.0, 0.0, 0.0, 0.5]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 5)
    assert box_iou([[3, 3, 1, 1]], [[3, 3, 1, 1]])[0, 0] == 0.0  # inverted box: area 0


def test_thresholds_and_recall_points_are_cocos():
    assert IOU_THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert len(RECALL_POINTS) == 101
    assert (RECALL_POINTS[25], RECALL_POINTS[50], RECALL_POINTS[75]) == (0.25, 0.5, 0.75)


# ---------------------------------------------------------------- detection

def test_perfect_detections_give_ap_one():
    m = DetectionMetric(2)
    for frame in range(2):
        gt = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [5, 5, 9, 30]], float) + frame
        m.update(gt, [0.9, 0.8, 0.7], [0, 1, 1], gt, [0, 1, 1])
    r = m.compute()
    assert r["mAP50"] == 1.0 and r["mAP50_95"] == 1.0
    assert r["num_gt_per_class"] == [2, 4] and r["frames"] == 2


def test_known_precision_recall_curve():
    # One class, two frames, 4 ground truths.
    m = DetectionMetric(1)
    a_gt = [[0, 0, 10, 10], [20, 0, 30, 10]]
    b_gt = [[0, 0, 10, 10], [50, 50, 60, 60]]
    # Frame A: 0.9 = first GT (TP), 0.6 = the same box again (duplicate: FP), 0.5 = second GT
    # (TP). Frame B: 0.8 far from everything (FP), 0.7 = first GT of B (TP); B's second GT
    # is never found.
    m.update([[0, 0, 10, 10], [0, 0, 10, 10], [20, 0, 30, 10]], [0.9, 0.6, 0.5], [0, 0, 0],
             a_gt, [0, 0])
    m.update([[100, 100, 110, 110], [0, 0, 10, 10]], [0.8, 0.7], [0, 0], b_gt, [0, 0])
    # By score: TP FP TP FP TP; cumulative TP 1 1 2 2 3, FP 0 1 1 2 2
    # recall    .25  .25  .50  .50  .75
    # precision 1    1/2  2/3  1/2  3/5   -> envelope (max to the right) 1, 2/3, 2/3, .6, .6
    # 101 recall points r = i/100: r <= .25 (26 points) -> 1; .25 < r <= .5 (25) -> 2/3;
    # .5 < r <= .75 (25) -> .6; r > .75 (25) never reached -> 0.
    expected = (26 * 1 + 25 * 2 / 3 + 25 * 0.6) / 101  # = 0.57096
    r = m.compute()
    assert math.isclose(r["mAP50"], expected)
    # Every TP overlaps its GT exactly (IoU 1), so all ten thresholds agree.
    assert math.isclose(r["mAP50_95"], expected)
    # Without the duplicate the last precision would be 3/4: the duplicate costs AP.
    assert expected < (26 + 25 * 2 / 3 + 25 * 0.75) / 101


def test_greedy_matching_by_score_and_iou_thresholds():
    # One GT [0,0,10,10]. A (score .9) = [0,0,10,6]: intersection 60, union 100, IoU 0.6.
    # B (score .8) = the GT exactly. B comes first in the input: order by score, not input.
    m = DetectionMetric(1)
    m.update([[0, 0, 10, 10], [0, 0, 10, 6]], [0.8, 0.9], [0, 0], [[0, 0, 10, 10]], [0])
    ap = m.ap(0)
    # IoU thresholds .50, .55, .60: A is scored first and takes the GT; B is a duplicate
    # (FP). Precision 1, 1/2 at recall 1, 1 -> envelope 1 at every recall point -> AP 1.
    # Thresholds .65 ... .95: A misses (0.6 < t) and B, second, matches.
    # Precision 0, 1/2 at recall 0, 1 -> envelope 1/2, 1/2 -> AP 1/2.
    assert np.allclose(ap, [1, 1, 1, .5, .5, .5, .5, .5, .5, .5])
    assert math.isclose(m.compute()["mAP50_95"], (3 * 1 + 7 * 0.5) / 10)


def test_iou_just_at_and_below_thresholds():
    # [0,0,10,7] vs [0,0,10,10]: IoU 70 / 100 = 0.7: a TP at .50 ... .70 (5 thresholds),
    # a FP at .75 ... .95 (AP 0 there, the GT is never found).
    m = DetectionMetric(1)
    m.update([[0, 0, 10, 7]], [0.9], [0], [[0, 0, 10, 10]], [0])
    assert m.ap(0).tolist() == [1.0] * 5 + [0.0] * 5
    assert m.compute()["mAP50"] == 1.0 and m.compute()["mAP50_95"] == 0.5


def test_each_prediction_takes_the_best_free_ground_truth():
    # GTs g0 = [0,0,10,10], g1 = [4,0,14,10]. P1 (.9) = [3,0,13,10]: IoU with g0 70/130 =
    # .538, with g1 90/110 = .818 -> takes g1. P2 (.8) = [0,0,10,10] -> takes g0.
    # Both TP at 0.5 -> AP50 1. (Taking g0 first would have left P2 with g1 at IoU
    # 60/140 = .43: a FP.)
    m = DetectionMetric(1)
    m.update([[3, 0, 13, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 0],
             [[0, 0, 10, 10], [4, 0, 14, 10]], [0, 0])
    assert m.ap(0)[0] == 1.0


def test_labels_and_frames_do_not_cross():
    m = DetectionMetric(2)
    # Right box, wrong class: class 0's GT is missed (AP 0); class 1 has no GT (NaN, left
    # out of the mean).
    m.update([[0, 0, 10, 10]], [0.9], [1], [[0, 0, 10, 10]], [0])
    # Frame 2 has a detection where frame 1 had its GT, but no GT of its own: a FP.
    m.update([[0, 0, 10, 10]], [0.8], [0], np.zeros((0, 4)), np.zeros(0, np.int64))
    r = m.compute()
    assert r["AP50_per_class"][0] == 0.0 and math.isnan(r["AP50_per_class"][1])
    assert r["mAP50"] == 0.0


def test_empty_predictions_and_empty_ground_truth():
    no_preds = DetectionMetric(2)
    no_preds.update(np.zeros((0, 4)), [], [], [[0, 0, 5, 5]], [1])
    r = no_preds.compute()
    assert r["mAP50"] == 0.0 and r["mAP50_95"] == 0.0   # class 1 has GT, nothing found
    assert math.isnan(r["AP50_per_class"][0])            # class 0: no GT
    no_gt = DetectionMetric(2)
    no_gt.update([[0, 0, 5, 5]], [0.5], [0], np.zeros((0, 4)), [])
    assert math.isnan(no_gt.compute()["mAP50"]) and math.isnan(no_gt.compute()["mAP50_95"])
    assert math.isnan(DetectionMetric(3).compute()["mAP50"])  # no frames at all
    # Detections of a class without GT do not lower the mean over classes that have GT.
    mixed = DetectionMetric(2)
    mixed.update([[0, 0, 5, 5], [20, 20, 30, 30]], [0.5, 0.9], [0, 1], [[0, 0, 5, 5]], [0])
    assert mixed.compute()["mAP50"] == 1.0


def test_frame_order_does_not_matter_and_reset_forgets():
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(5):
        gt = rng.uniform(0, 50, (3, 2))
        gt = np.concatenate([gt, gt + rng.uniform(5, 20, (3, 2))], 1)
        pred = np.concatenate([gt + rng.normal(0, 2, gt.shape), gt[:1] + 30])
        frames.append((pred, rng.random(4), rng.integers(0, 2, 4), gt, rng.integers(0, 2, 3)))
    forward, backward = DetectionMetric(2), DetectionMetric(2)
    for f in frames:
        forward.update(*f)
    for f in frames[::-1]:
        backward.update(*f)
    a, b = forward.compute(), backward.compute()
    assert 0 < a["mAP50_95"] < 1 and a == b
    forward.reset()
    assert math.isnan(forward.compute()["mAP50"]) and forward.compute()["frames"] == 0


def test_average_precision_edge_cases():
    # No GT -> NaN; GT but no detections -> 0; a single TP of 2 GT -> recall .5 -> 51/101.
    assert np.isnan(average_precision(np.zeros(0), np.zeros((0, 1), bool), 0)).all()
    assert average_precision(np.zeros(0), np.zeros((0, 1), bool), 3).tolist() == [0.0]
    assert math.isclose(average_precision(np.array([0.3]), np.array([[True]]), 2)[0], 51 / 101)


@pytest.mark.parametrize("args, message", [
    (([[0, 0, 1, 1]], [0.5, 0.4], [0], [], []), "scores has 2 entries, expected 1"),
    (([[0, 0, 1, 1]], [0.5], [0, 0], [], []), "labels has 2 entries, expected 1"),
    (([[0, 0, 1, 1]], [0.5], [2], [], []), "labels holds class id 2; expected 0..1"),
    (([], [], [], [[0, 0, 1, 1]], [-1]), "gt_labels holds class id -1"),
    (([], [], [], [[0, 0, 1, 1]], [0.0]), "integer class ids"),
    (([[0, 0, 1]], [0.5], [0], [], []), r"\(K, 4\)"),
    (([[0, 0, np.nan, 1]], [0.5], [0], [], []), "NaN or Inf"),
    (([[0, 0, 1, 1]], [np.inf], [0], [], []), "NaN or Inf"),
])
def test_detection_rejects_bad_input(args, message):
    m = DetectionMetric(2)
    with pytest.raises(ValueError, match=message):
        m.update(*args)
    assert m.compute()["frames"] == 0  # nothing half-counted


# ---------------------------------------------------------------- segmentation

def test_segmentation_two_class_confusion_matrix():
    target = np.array([[0, 0, 0, 1], [1, 1, 1, 255]])
    pred = np.array([[0, 0, 1, 1], [1, 0, 1, 0]])
    m = SegmentationMetric(2)
    m.update(pred, target)
    # Pairs (gt, pred) over the 7 non-ignored pixels: (0,0) (0,0) (0,1) (1,1) (1,1) (1,0)
    # (1,1) -> rows gt, columns pred: [[2, 1], [1, 3]].
    assert m.confusion.tolist() == [[2, 1], [1, 3]]
    r = m.compute()
    # IoU0 = 2 / (2 + 1 + 1) = .5; IoU1 = 3 / (3 + 1 + 1) = .6; mean .55; accuracy 5 / 7.
    assert np.allclose(r["IoU_per_class"], [0.5, 0.6])
    assert math.isclose(r["mIoU"], 0.55) and math.isclose(r["pixel_accuracy"], 5 / 7)


def test_segmentation_absent_classes_are_nan_and_left_out():
    target = np.array([[0, 0, 1, 255]])
    pred = np.array([[0, 3, 1, 2]])
    m = SegmentationMetric(4)
    m.update(pred, target)
    r = m.compute()
    # Class 0: TP 1, FN 1 (a 0 predicted as 3) -> 1/2. Class 1: 1/1. Class 3: predicted
    # once, never true -> 0/1 = 0, counted. Class 2: only predicted on the ignored pixel ->
    # absent from both -> NaN, left out. mIoU = (.5 + 1 + 0) / 3.
    assert r["IoU_per_class"][:2] == [0.5, 1.0] and r["IoU_per_class"][3] == 0.0
    assert math.isnan(r["IoU_per_class"][2])
    assert math.isclose(r["mIoU"], 0.5) and math.isclose(r["pixel_accuracy"], 2 / 3)


def test_segmentation_perfect_accumulated_and_empty():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 3, (4, 5)) for _ in range(3)]
    perfect = SegmentationMetric(3)
    for f in frames:
        perfect.update(f, f)
    assert perfect.compute()["mIoU"] == 1.0 and perfect.compute()["pixel_accuracy"] == 1.0
    # Accumulating frames = one update over all their pixels.
    preds = [rng.integers(0, 3, (4, 5)) for _ in frames]
    split, whole = SegmentationMetric(3), SegmentationMetric(3)
    for p, t in zip(preds, frames):
        split.update(p, t.astype(np.uint8))
    whole.update(np.concatenate(preds), np.concatenate(frames))
    assert np.array_equal(split.confusion, whole.confusion)
    ignored = SegmentationMetric(3)
    ignored.update(np.zeros((2, 2), np.int64), np.full((2, 2), 255))
    assert math.isnan(ignored.compute()["mIoU"]) and math.isnan(ignored.compute()["pixel_accuracy"])


@pytest.mark.parametrize("pred, target, message", [
    (np.zeros((2, 2), int), np.zeros((2, 3), int), "shape"),
    (np.zeros((2, 2)), np.zeros((2, 2), int), "integer class ids"),
    (np.full((2, 2), 3), np.zeros((2, 2), int), "pred holds class id 3; expected 0..2"),
    (np.full((2, 2), 255), np.zeros((2, 2), int), "pred holds class id 255"),
    (np.zeros((2, 2), int), np.full((2, 2), 7), "target .* holds class id 7"),
    (np.zeros((2, 2), int), np.full((2, 2), -1), "target .* holds class id -1"),
])
def test_segmentation_rejects_bad_input(pred, target, message):
    with pytest.raises(ValueError, match=message):
        SegmentationMetric(3).update(pred, target)


def test_segmentation_ignore_index_must_not_be_a_class():
    with pytest.raises(ValueError, match="collides"):
        SegmentationMetric(3, ignore_index=2)


# ---------------------------------------------------------------- depth

def test_depth_perfect():
    t = np.array([[0.5, 2.0], [7.0, 30.0]])
    m = DepthMetric()
    m.update(t, t)
    r = m.compute()
    assert (r["abs_rel"], r["rmse"], r["delta1"], r["delta2"], r["delta3"]) == (0, 0, 1, 1, 1)


def test_depth_hand_computed():
    pred = np.array([1.0, 1.9, 1.3, 3.0, 0.4, 5.0, np.nan, 2.0, 1.0])
    target = np.array([1.0, 1.0, 1.0, 2.0, 1.0, 0.0, 0.0, np.nan, np.inf])
    # Valid: the first 5 (GT 0, NaN, Inf are not; a NaN prediction there is fine).
    # max(p/t, t/p): 1, 1.9, 1.3, 1.5, 2.5 (an underestimate counts the same way).
    # AbsRel = (0 + .9 + .3 + .5 + .6) / 5 = 2.3 / 5 = .46
    # RMSE = sqrt((0 + .81 + .09 + 1 + .36) / 5) = sqrt(.452)
    # delta < 1.25: {1} -> 1/5; < 1.5625: {1, 1.3, 1.5} -> 3/5; < 1.953125: adds 1.9 -> 4/5.
    m = DepthMetric()
    m.update(pred, target)
    r = m.compute()
    assert math.isclose(r["abs_rel"], 0.46) and math.isclose(r["rmse"], math.sqrt(0.452))
    assert [r["delta1"], r["delta2"], r["delta3"]] == [0.2, 0.6, 0.8]
    assert r["pixels"] == 5


def test_depth_delta_thresholds_are_strict():
    # Ratios exactly 1.25 and 1.25^2 = 1.5625 (both exact in binary): "< 1.25" excludes the
    # first, "< 1.5625" includes it but excludes the second; "< 1.953125" includes both.
    m = DepthMetric()
    m.update(np.array([1.25, 1.0]), np.array([1.0, 1.5625]))
    r = m.compute()
    assert [r["delta1"], r["delta2"], r["delta3"]] == [0.0, 0.5, 1.0]


def test_depth_is_pixel_weighted_over_frames():
    m = DepthMetric()
    m.update(np.array([2.0]), np.array([1.0]))            # 1 pixel, AbsRel 1
    m.update(np.full((1, 3), 4.0), np.full((1, 3), 4.0))  # 3 pixels, AbsRel 0
    # (1 + 0 + 0 + 0) / 4 = .25, not the mean of frame means (.5).
    r = m.compute()
    assert r["abs_rel"] == 0.25 and r["delta1"] == 0.75 and r["frames"] == 2
    assert math.isclose(r["rmse"], math.sqrt(1 / 4))


def test_depth_non_positive_predictions_count_as_errors():
    m = DepthMetric(min_depth=0.01)
    m.update(np.array([0.0, -3.0]), np.array([1.0, 1.0]))
    # Both clamped to 0.01: |0.01 - 1| / 1 = .99 each; ratio 100 fails every delta.
    r = m.compute()
    assert math.isclose(r["abs_rel"], 0.99) and r["delta3"] == 0.0


def test_depth_rejects_bad_input_and_reports_nan_without_pixels():
    m = DepthMetric()
    with pytest.raises(ValueError, match="NaN or Inf"):
        m.update(np.array([np.nan, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        m.update(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="min_depth"):
        DepthMetric(min_depth=0)
    m.update(np.ones(3), np.zeros(3))
    r = m.compute()
    assert math.isnan(r["abs_rel"]) and math.isnan(r["delta1"]) and r["pixels"] == 0
