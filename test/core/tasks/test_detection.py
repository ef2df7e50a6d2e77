"""Detection targets decode back to their boxes; the focal loss prefers correct heatmaps."""

import numpy as np
import torch

from mtl_split_core.tasks.detection import (
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
