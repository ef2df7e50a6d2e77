"""Segmentation: cross-entropy over labelled pixels; a frame with none gives 0, not NaN."""

import torch

from mtl_split_core.classes import IGNORE_ID
from mtl_split_core.model import ModelConfig
from mtl_split_core.tasks import get_task
from mtl_split_core.tasks.segmentation import segmentation_loss


def test_all_ignored_pixels_give_zero_loss_and_zero_gradient():
    logits = torch.randn(2, 5, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 4, 4), IGNORE_ID, dtype=torch.long))
    loss.backward()
    assert float(loss) == 0.0 and float(logits.grad.abs().sum()) == 0.0
    target = torch.full((2, 4, 4), IGNORE_ID, dtype=torch.long)
    target[0, 0, 0] = 3
    expected = torch.nn.functional.cross_entropy(logits[:1, :, :1, :1], target[:1, :1, :1])
    assert torch.isclose(segmentation_loss(logits, target), expected)


def test_the_heads_classes_are_the_cards_segmentation_classes():
    config = ModelConfig(detection_classes=("car",), segmentation_classes=("road", "car"))
    assert get_task("segmentation").classes(config) == ("road", "car")
    assert get_task("detection").classes(config) == ("car",)
    assert get_task("depth").classes(config) == ()
