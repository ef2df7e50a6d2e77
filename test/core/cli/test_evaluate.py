"""`mtl-split eval`: `--split-set` picks a labelled split by default and names the labelled
splits otherwise (Cityscapes labels train and val; its test labels are withheld);
`--into-card` writes the results into the model card's metrics (atomically, merged per split
and codec), the accuracy floor reads them from there, old cards still load."""

import json

import pytest
import torch

from mtl_split_core.cli.evaluate import split_to_score
from mtl_split_core.cli.main import main
from mtl_split_core.errors import InputError
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, load_model, save_model
from mtl_split_core.model.card import card_metrics
from mtl_split_core.plan.planner import accuracy_drops, card_accuracy_drops, load_accuracy_drops

from .test_train import write_sim_folder


def test_eval_into_card_writes_metrics_the_floor_reads(tmp_path, capsys):
    data = write_sim_folder(tmp_path / "ds", ("test",) * 3)
    model = tmp_path / "model"
    torch.manual_seed(0)
    save_model(model, MultiTaskSplitNet(ModelConfig(
        backbone="mobilenetv3_small", input_size=(96, 64), bottlenecks={"s16": 8})).eval())
    before = json.loads((model / "card.json").read_text())
    assert card_accuracy_drops(before) is None and card_metrics(before) == []  # old card
    with pytest.raises(InputError, match="a model card without metrics"):
        load_accuracy_drops(model)
    run = ["eval", "--model", str(model), "--data", str(data), "--device", "cpu",
           "--into-card"]
    assert main([*run, "--codec", "float", "--out", str(tmp_path / "float.json")]) == 0
    assert main([*run, "--codec", "q4-zstd/1", "--out", str(tmp_path / "q4.json")]) == 0
    assert "metrics written into" in capsys.readouterr().out
    card = json.loads((model / "card.json").read_text())
    rows = json.loads((tmp_path / "float.json").read_text()) + \
        json.loads((tmp_path / "q4.json").read_text())
    assert card["metrics"] == {"data": str(data), "split_set": "test", "results": rows}
    assert {(r["split"], r["codec"]) for r in card_metrics(card)} == {
        ("s16", "float"), ("s16", "q4-zstd/1")}
    assert load_accuracy_drops(model) == load_accuracy_drops(model / "card.json") == \
        card_accuracy_drops(card) == accuracy_drops(rows)
    _, loaded = load_model(model)  # the weights' fingerprint does not cover the metrics
    assert loaded["fingerprint"] == before["fingerprint"]
    # The same split and codec again replaces its row; another data set starts afresh.
    assert main([*run, "--codec", "q4-zstd/1"]) == 0
    assert len(card_metrics(json.loads((model / "card.json").read_text()))) == 2
    other = write_sim_folder(tmp_path / "other", ("test",) * 2)
    assert main(["eval", "--model", str(model), "--data", str(other), "--device", "cpu",
                 "--into-card", "--codec", "float"]) == 0
    card = json.loads((model / "card.json").read_text())
    assert card["metrics"]["data"] == str(other) and len(card_metrics(card)) == 1
    assert not [p for p in model.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("data, expected", [
    (["data/sim"], "test"),                                    # a bare folder = sim data
    (["cityscapes:/d/cityscapes"], "val"),
    (["cityscapes:/d/cityscapes?test=val"], "test"),           # val served as test
    (["data/sim", "cityscapes:/d/cityscapes"], "val"),         # the split both label
    (["kitti:/d/kitti", "folder:/d/yard"], "test"),
])
def test_default_is_a_split_every_data_set_labels(data, expected):
    assert split_to_score(data, None) == expected


def test_a_requested_split_must_be_labelled():
    assert split_to_score(["cityscapes:/d/c"], "train") == "train"
    with pytest.raises(InputError, match=r"--split-set test: cityscapes:/d/c labels train, "
                                         r"val; sim:data/sim labels train, val, test"):
        split_to_score(["cityscapes:/d/c", "data/sim"], "test")


def test_unlabelled_split_is_one_line_and_exit_2(capsys):
    # Checked before the model loads: no model or data needed to get the answer.
    assert main(["eval", "--data", "cityscapes:/nowhere", "--split-set", "test"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cityscapes:/nowhere labels train, val" in err


def test_split_set_has_help(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--split-set {train,val,test}" in help_text
    assert "Cityscapes labels only train and val" in help_text


def test_codecs_go_with_their_split_kind():
    from mtl_split_core.cli.evaluate import codecs_to_score
    from mtl_split_core.image_codec import PROFILED_IMAGE_CODECS
    assert codecs_to_score("input", "all") == [None, *PROFILED_IMAGE_CODECS]
    assert codecs_to_score("input", "webp-q70/1") == ["webp-q70/1"]
    assert codecs_to_score(None, "q4-zstd/1") == ["q4-zstd/1"]
    for split, codec in (("input", "q4-zstd/1"), ("s16", "webp-q80/1"), (None, "jpeg-q90/1")):
        with pytest.raises(InputError):
            codecs_to_score(split, codec)


def test_an_unknown_codec_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--data", "x", "--codec", "webp-q101/1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "webp-q101/1" in err
    assert "eb-<k>/1" in err and "ebc-<k>/1" in err  # the entropy codecs are named too
    assert len(err.strip().splitlines()) == 1


def test_into_card_gives_the_controller_every_eb_and_image_codec(tmp_path):
    """`eval --into-card` at the model's split (every codec: f16/q8/q4 and the card's
    eb-<k>/1) and again with --split input (every profiled image codec) leaves one row per
    option in the card, so the planner and the controller can weigh each (issue #23)."""
    from mtl_split_core.image_codec import PROFILED_IMAGE_CODECS, is_image_codec
    from mtl_split_core.model.entropy_model import EntropyModel

    data = write_sim_folder(tmp_path / "ds", ("test",) * 2)
    model = tmp_path / "model"
    torch.manual_seed(0)
    save_model(model, MultiTaskSplitNet(ModelConfig(
        backbone="mobilenetv3_small", input_size=(96, 64), bottlenecks={"s16": 8},
        entropy=EntropyModel(8, [1.0, 30.0]).freeze("s16"))).eval())
    run = ["eval", "--model", str(model), "--data", str(data), "--device", "cpu",
           "--into-card"]
    assert main(run) == 0
    assert main([*run, "--split", "input"]) == 0
    drops = card_accuracy_drops(json.loads((model / "card.json").read_text()))
    images = [c for c in PROFILED_IMAGE_CODECS if is_image_codec(c)]  # this Pillow's
    assert set(drops) == {f"s16 {c}" for c in ("f16-zstd/1", "q8-zstd/1", "q4-zstd/1",
                                                "eb-0/1", "eb-1/1")} | \
        {f"input {c}" for c in images}
