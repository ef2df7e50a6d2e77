"""train_entropy on any model: the gains stay within the tables' valid range (features of a
tiny scale, constant ones), and only features no table can code are an InputError."""

import math

import pytest
import torch

from mtl_split_core.codec import decode, encode
from mtl_split_core.entropy_tables import GAIN_RANGE, EntropyTables
from mtl_split_core.errors import InputError
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.model.card import load_model
from mtl_split_core.model.entropy_model import GAIN_BOUNDS
from mtl_split_core.train_entropy import calibrate_gains, check_features, train_entropy
from support.tiny_data import tiny_dataset

torch.set_num_threads(2)


def tiny_untrained(path):
    """The CI tests' tiny model (test/support/ros_nodes.tiny_model), untrained: its bottleneck
    output is ~1e-6, far below what a gain of at most 1e4 can quantize."""
    net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                        input_size=(128, 96), bottlenecks={"s16": 8},
                                        depth_reference_focal=100.0))
    save_model(path, net.eval())
    return path


def _features(scale: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((16, 8, 6, 8), generator=g) * scale


def test_calibration_reaches_its_targets_on_unit_scale_features():
    gains, reached = calibrate_gains(_features(1.0), [100.0, 250.0])
    assert all(GAIN_BOUNDS[0] <= g <= GAIN_BOUNDS[1] for g in gains) and gains[0] < gains[1]
    for got, target in zip(reached, [100.0, 250.0]):  # 2 and 5 bits a value
        assert 0.9 < got / target < 1.1


@pytest.mark.parametrize("y", [_features(1e-7), torch.zeros(16, 8, 6, 8), _features(1e5)],
                         ids=["tiny", "constant", "huge"])
def test_calibration_stays_within_the_tables_gain_range(y):
    gains, reached = calibrate_gains(y, [300.0, 3000.0])
    assert all(GAIN_BOUNDS[0] <= g <= GAIN_BOUNDS[1] for g in gains)
    assert all(math.isfinite(b) and b > 0 for b in reached)


def test_features_no_table_can_code_are_input_errors():
    check_features(_features(1e-7), "s16")  # codable (badly): no error
    nan = _features(1.0)
    nan[3, 0, 0, 0] = math.nan
    with pytest.raises(InputError, match=r"not finite \(NaN/inf\) on 1 of 16 frames"):
        check_features(nan, "s16")
    with pytest.raises(InputError, match="beyond the"):
        check_features(_features(1.0) * 1e9, "s16")


def test_an_untrained_tiny_model_gets_valid_tables_that_code(tmp_path):
    """The defect: gains of ~1e5 (the features' 1/std) failed the card's validation. Now the
    gains are clamped into the range, the card loads, and its codec codes; the log says the
    point could not reach its target."""
    lines = []
    result = train_entropy(tiny_untrained(tmp_path / "base"), tiny_dataset(4), tmp_path / "out",
                           targets=(300,), max_steps=0, progress=False, log=lines.append)
    model, card = load_model(tmp_path / "out" / "model")
    tables = EntropyTables(card["entropy"])
    gains = tables.points[0].gain
    assert ((gains >= GAIN_RANGE[0]) & (gains <= GAIN_RANGE[1])).all()
    assert any("instead of the target 300" in line for line in lines)
    assert card["trained_entropy"]["calibrated_bytes"][0] < 300
    assert result["card"]["fingerprint"] == card["fingerprint"]
    x = torch.from_numpy(tiny_dataset(1)["images"]).permute(0, 3, 1, 2).float() / 255
    z = model.edge(x, "s16")[0].detach()
    enc = encode(z, "eb-0/1", tables=tables)
    assert decode(enc, tables=tables).shape == tuple(z.shape)
