"""Class lists a card may carry: any names, as long as ids fit mono8 beside the ignore id."""

import pytest

from mtl_split_core.model import ModelConfig, ModelConfigError

CITY_THINGS = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


def test_any_class_lists_with_stuff_first_then_the_detection_classes():
    stuff = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
             "traffic sign", "vegetation", "terrain", "sky")
    config = ModelConfig(detection_classes=CITY_THINGS,
                         segmentation_classes=stuff + CITY_THINGS)
    assert len(config.segmentation_classes) == 19
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("changes, message", [
    ({"detection_classes": (), "segmentation_classes": ("a",)}, "at least one class"),
    ({"detection_classes": ("x",),
      "segmentation_classes": tuple(f"s{i}" for i in range(255)) + ("x",)}, "at most 255"),
    ({"detection_classes": ("x",), "segmentation_classes": ("x", "x")}, "distinct"),
])
def test_unusable_class_lists_name_the_field(changes, message):
    with pytest.raises(ModelConfigError, match=message):
        ModelConfig(**changes)
    # Without a detection head no detection class is needed.
    ModelConfig(tasks=("segmentation", "depth"), detection_classes=(),
                segmentation_classes=("road", "sky"))
