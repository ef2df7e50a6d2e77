"""`mtl-split train` / `eval` on a sim folder: from scratch, fine-tuned with a frozen edge,
evaluated; bad combinations of options are one line and exit 2."""

import json

import cv2
import numpy as np
import pytest
import torch

from mtl_split_core.cli.main import main
from support.tiny_data import tiny_dataset

torch.set_num_threads(2)
TRAIN_OPTIONS = ["--epochs", "1", "--batch-size", "4", "--max-steps", "1", "--device", "cpu"]


def write_sim_folder(root, splits=("train",) * 8 + ("val",) * 2):
    """A gen-data style folder (index.json, rgb/, depth/, seg/) of tiny frames."""
    data = tiny_dataset(len(splits))
    for sub in ("rgb", "depth", "seg"):
        (root / sub).mkdir(parents=True)
    images, annotations = [], []
    for i, split in enumerate(splits):
        name = f"f{i:03d}"
        cv2.imwrite(str(root / "rgb" / f"{name}.jpg"), data["images"][i][..., ::-1])
        cv2.imwrite(str(root / "depth" / f"{name}.png"),
                    (data["depth"][i] * 1000).astype(np.uint16))
        cv2.imwrite(str(root / "seg" / f"{name}.png"), data["seg"][i])
        images.append({"id": i, "file_name": name, "width": 96, "height": 64, "split": split,
                       "scene": i, "k": [100.0, 0, 48, 0, 100.0, 32, 0, 0, 1]})
        for x1, y1, x2, y2 in data["boxes"][i]:
            annotations.append({"id": len(annotations), "image_id": i, "category_id": 0,
                                "bbox": [float(x1), float(y1), float(x2 - x1),
                                         float(y2 - y1)], "area": 1.0, "iscrowd": 0})
    (root / "index.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return root


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return write_sim_folder(tmp_path_factory.mktemp("sim") / "ds")


def test_train_then_fine_tune_with_a_frozen_edge_then_evaluate(sim, tmp_path, capsys):
    scratch, tuned = tmp_path / "scratch", tmp_path / "tuned"
    assert main(["train", "--data", str(sim), "--out", str(scratch), "--size", "96x64",
                 "--backbone", "mobilenetv3_small", "--bottleneck", "8", "--no-pretrained",
                 *TRAIN_OPTIONS]) == 0
    base = json.loads((scratch / "model" / "card.json").read_text())
    assert base["depth_reference_focal"] == 100.0 and base["input_size"] == [96, 64]
    assert main(["train", "--data", str(sim), "--init", str(scratch / "model"),
                 "--freeze-edge", "--tasks", "depth", "--out", str(tuned),
                 *TRAIN_OPTIONS]) == 0
    card = json.loads((tuned / "model" / "card.json").read_text())
    assert card["accepts_edge_fingerprint"] == base["fingerprint"]
    assert card["name"] == f"{base['name']}_tuned" and card["tasks"] == ["depth"]
    assert card["bottlenecks"] == base["bottlenecks"]
    assert card["fine_tuned_from"]["fresh_heads"] == []
    capsys.readouterr()
    assert main(["eval", "--model", str(tuned / "model"), "--data", str(sim), "--split-set",
                 "val", "--codec", "float", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "on 2 val frames" in out and "| float (unsplit) |" in out


def test_fine_tuning_may_add_bottlenecks_at_other_splits(sim, tmp_path, capsys):
    """--init M --split s16,s32 (issue 14): a deployed single-split model becomes one card
    that serves more splits, each step at a random one of them: its own bottleneck and weights
    are kept, the new split's bottleneck starts fresh, batch-norm statistics outside the new
    bottleneck stay the base's (averaged over splits they fit none); validation per split.
    Changing an existing bottleneck is refused."""
    from mtl_split_core.model import load_model

    base_dir, multi = tmp_path / "base", tmp_path / "multi"
    assert main(["train", "--data", str(sim), "--out", str(base_dir), "--size", "96x64",
                 "--backbone", "mobilenetv3_small", "--bottleneck", "8", "--no-pretrained",
                 *TRAIN_OPTIONS]) == 0
    assert main(["train", "--data", str(sim), "--init", str(base_dir / "model"), "--out",
                 str(multi), "--split", "s16,s32", "--bottleneck", "8,4", "--lr", "0",
                 *TRAIN_OPTIONS]) == 0
    base, _ = load_model(base_dir / "model")
    tuned, card = load_model(multi / "model")
    assert {k: v for k, v in card["bottlenecks"].items() if v} == {"s16": 8, "s32": 4}
    assert card["trained"]["splits"] == ["s16", "s32"] and card["default_split"] == "s16"
    tuned_state = tuned.state_dict()
    for name, value in base.state_dict().items():  # lr 0 and fixed statistics: all kept
        assert torch.equal(tuned_state[name], value), name
    assert set(json.loads((multi / "val_metrics.json").read_text())["per_split"]) == \
        {"s16", "s32"}
    capsys.readouterr()
    assert main(["train", "--data", str(sim), "--init", str(base_dir / "model"), "--out",
                 str(tmp_path / "bad"), "--bottleneck", "4", *TRAIN_OPTIONS]) == 2
    assert "keeps the base's bottlenecks" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--freeze-edge"], "--freeze-edge: needs --init"),
    (["--split", "s16,s32"], "--split s16,s32: training several splits needs --init"),
    (["--init", "{scratch}", "--split", "s16,s7"], "--split s16,s7: expected distinct split"),
    (["--init", "{scratch}", "--split", "s16,s32", "--bottleneck", "8,4,2"],
     "expected one number or one per split"),
    (["--init", "{scratch}", "--backbone", "resnet18", "--size", "64x64"],
     "--backbone, --size: fine-tuning keeps"),
    (["--init", "{missing}"], "--init {missing}: model"),
])
def test_bad_option_combinations_are_one_line_and_exit_2(sim, tmp_path, capsys, args,
                                                         message):
    from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model

    scratch = tmp_path / "m"
    save_model(scratch, MultiTaskSplitNet(ModelConfig(backbone="mobilenetv3_small",
                                                      input_size=(96, 64))))
    paths = {"scratch": str(scratch), "missing": str(tmp_path / "none")}
    args = [a.format(**paths) for a in args]
    assert main(["train", "--data", str(sim), "--out", str(tmp_path / "o"), *args,
                 *TRAIN_OPTIONS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(**paths) in err
    assert not (tmp_path / "o" / "model").exists()
