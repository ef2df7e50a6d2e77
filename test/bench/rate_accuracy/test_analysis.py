"""bench/rate_accuracy/analysis.py: curves from result rows, bytes at equal accuracy, BD-rate."""

import pytest
from analysis import ALL, bd_rates, best_baseline, equal_accuracy, our_curves

METRICS = {"detection": "mAP50", "segmentation": "mIoU"}


def _row(family, codec, setting, nbytes, map50, miou):
    label = f"split {setting} {codec}" if family == "ours" else f"{codec} {setting}"
    return {"family": family, "codec": codec, "setting": setting, "label": label,
            "bytes_per_frame": nbytes, "mAP50": map50, "mIoU": miou}


ROWS = [
    _row("reference", "local inference", "", 0, 0.80, 0.90),
    _row("ours", "q4", "s16", 1000, 0.79, 0.89),
    _row("ours", "q8", "s16", 3000, 0.80, 0.90),
    # webp: mAP 0.785 at 1000 B (= ours q4 - 0.005), mIoU 0.885 at 2000 B.
    _row("image", "webp", "q50", 500, 0.70, 0.80),
    _row("image", "webp", "q70", 1000, 0.785, 0.85),
    _row("image", "webp", "q90", 2000, 0.79, 0.885),
    _row("image", "webp", "q95", 4000, 0.81, 0.95),
    # jpeg: never reaches mIoU 0.885.
    _row("image", "jpeg", "q90", 5000, 0.80, 0.85),
    _row("image", "jpeg", "q95", 9000, 0.82, 0.86),
    {"family": "ours", "codec": "x", "setting": "s16", "label": "split s16 x",
     "skipped": "needs tables"},
]


def test_equal_accuracy_bytes_and_ratios():
    eq = {e["ours"]: e for e in equal_accuracy(ROWS, METRICS)}
    assert set(eq) == {"split s16 q4", "split s16 q8"}  # the skipped row has no entry
    webp = eq["split s16 q4"]["baselines"]["webp"]
    assert webp["mAP50"]["bytes"] == pytest.approx(1000) and webp["mAP50"]["bound"] == "="
    assert webp["mAP50"]["ratio"] == pytest.approx(1.0)
    assert webp["mIoU"]["bytes"] == pytest.approx(2000)
    # Every metric at once: the larger need; ours is half of it.
    assert webp[ALL]["bytes"] == pytest.approx(2000) and webp[ALL]["ratio"] == pytest.approx(0.5)
    jpeg = eq["split s16 q4"]["baselines"]["jpeg"]
    assert jpeg["mAP50"]["bound"] == "<=" and jpeg["mAP50"]["bytes"] == 5000  # cheapest reaches
    assert jpeg["mIoU"]["bytes"] is None and jpeg[ALL]["bytes"] is None     # never reached
    assert best_baseline(eq["split s16 q4"])[0] == "webp"
    assert best_baseline(eq["split s16 q8"], "mIoU")[0] == "webp"


def test_bd_rates_cover_every_curve_pair_and_metric():
    bd = bd_rates(ROWS, METRICS)
    assert {(b["ours"], b["anchor"], b["metric"]) for b in bd} == {
        ("split s16", a, m) for a in ("webp", "jpeg") for m in ("mAP50", "mIoU")}
    assert all(b["text"] for b in bd)


def test_our_curves_group_by_split_and_add_the_union_for_several_splits():
    rows = ROWS + [_row("ours", "q4", "s8", 2000, 0.7, 0.8)]
    curves = our_curves(rows)
    assert set(curves) == {"split s16", "split s8", "ours, any split"}
    assert len(curves["ours, any split"]) == 3
    assert set(our_curves(ROWS)) == {"split s16"}
