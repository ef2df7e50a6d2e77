"""bench/rate_accuracy/methods.py: which of our operating points exist for a model card."""

from methods import curve_metrics


def test_curve_metrics_of_the_models_tasks():
    assert curve_metrics(["detection", "segmentation", "depth"]) == {
        "detection": "mAP50", "segmentation": "mIoU", "depth": "delta1"}
    assert curve_metrics(["depth"]) == {"depth": "delta1"}
