"""bench/rate_accuracy/methods.py: which of our operating points exist for a model card."""

from methods import curve_metrics


def test_curve_metrics_of_the_models_tasks():
    assert curve_metrics(["detection", "segmentation", "depth"]) == {
        "detection": "mAP50", "segmentation": "mIoU", "depth": "delta1"}
    assert curve_metrics(["depth"]) == {"depth": "delta1"}


def test_our_methods_include_the_cards_entropy_coded_points_at_their_split():
    from pathlib import Path

    from methods import Scorer, our_methods

    from mtl_split_core.codec import CODECS
    from mtl_split_core.model import load_model
    models = Path(__file__).resolve().parents[3] / "models"
    with_tables, _ = load_model(models / "default")
    tables_split = with_tables.config.entropy["split"]
    points = {(m.setting, m.codec) for m in our_methods(Scorer(with_tables, {}, "cpu", 1))}
    entropy_coded = {(s, c) for s, c in points if c.startswith("eb")}
    assert entropy_coded == {(tables_split, f"{family}-{k}/1")
                             for family in ("eb", "ebc") for k in range(6)}
    assert {(s, c) for s, c in points if not c.startswith("eb")} == {
        (s, c) for s in with_tables.split_names for c in CODECS}
    plain, _ = load_model(models / "every_split")  # no tables: no entropy-coded points
    assert plain.config.entropy is None
    assert all(not m.codec.startswith("eb") for m in our_methods(Scorer(plain, {}, "cpu", 1)))
