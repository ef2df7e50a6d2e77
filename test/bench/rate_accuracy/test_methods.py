"""bench/rate_accuracy/methods.py: which of our operating points exist for a model card."""

from methods import curve_metrics, served_splits

NAMES = ["s4", "s8", "s16", "s32"]


def test_served_splits_follow_the_card():
    assert served_splits({"default_split": "s16", "trained": {"split": "s16"}}, NAMES) == ["s16"]
    multi = {"default_split": "s16", "trained": {"split": "s16", "splits": ["s16", "s8", "s32"]}}
    assert served_splits(multi, NAMES) == ["s8", "s16", "s32"]  # in the model's order
    assert served_splits({"default_split": "s8"}, NAMES) == ["s8"]  # an untrained card


def test_curve_metrics_of_the_models_tasks():
    assert curve_metrics(["detection", "segmentation", "depth"]) == {
        "detection": "mAP50", "segmentation": "mIoU", "depth": "delta1"}
    assert curve_metrics(["depth"]) == {"depth": "delta1"}
