"""`mtl-split train-eb` on the CI tests' tiny untrained model: tables it can freeze, or for a
model whose features no table can code, one line and exit 2."""

import json

import pytest
import torch

from mtl_split_core.cli.main import main
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.model.card import load_model

from .test_train import write_sim_folder

torch.set_num_threads(2)
QUICK = ["--device", "cpu", "--max-steps", "0", "--targets", "300", "--no-val"]


def tiny_model(path, broken: bool = False):
    """test/support/ros_nodes.tiny_model's network; ``broken``: a NaN in its bottleneck."""
    net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                        input_size=(128, 96), bottlenecks={"s16": 8},
                                        depth_reference_focal=100.0))
    if broken:
        with torch.no_grad():
            net.bottlenecks["s16"].encoder[0].weight[0, 0] = float("nan")
    save_model(path, net.eval())
    return str(path)


@pytest.mark.slow
def test_train_eb_freezes_tables_for_an_untrained_tiny_model(tmp_path, capsys):
    data = write_sim_folder(tmp_path / "ds", ("train",) * 4)
    out = tmp_path / "eb"
    assert main(["train-eb", "--model", tiny_model(tmp_path / "tiny"), "--data", str(data),
                 "--out", str(out), *QUICK]) == 0
    assert "instead of the target 300" in capsys.readouterr().out
    _, card = load_model(out / "model")
    assert len(card["entropy"]["operating_points"]) == 1
    assert json.loads((out / "result.json").read_text())["fingerprint"] == card["fingerprint"]


def test_train_eb_on_features_no_table_can_code_is_one_line_and_exit_2(tmp_path, capsys):
    data = write_sim_folder(tmp_path / "ds", ("train",) * 2)
    out = tmp_path / "eb"
    assert main(["train-eb", "--model", tiny_model(tmp_path / "tiny", broken=True), "--data",
                 str(data), "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "not finite (NaN/inf) on 2 of 2 frames" in err
    assert not out.exists()  # nothing half-written


def test_shape_bytes_is_a_byte_range_or_all():
    import argparse

    from mtl_split_core.cli.train_entropy import byte_range

    assert byte_range("400,1500") == (400.0, 1500.0)
    assert byte_range("all") is None
    for bad in ("1500,400", "400", "a,b", "-1,5", "400,1500,2000"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected LO,HI"):
            byte_range(bad)


def test_a_bad_shape_bytes_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-eb", "--data", str(tmp_path), "--out", str(tmp_path / "eb"),
              "--shape-bytes", "1500,400"])
    assert exit_info.value.code == 2
    assert "expected LO,HI" in capsys.readouterr().err
