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
from mtl_split_core.model.entropy_model import GAIN_BOUNDS, EntropyModel
from mtl_split_core.train_entropy import (
    calibrate_gains,
    check_features,
    head_outputs,
    output_distance,
    task_weights,
    train_entropy,
)
from support.tiny_data import tiny_dataset


def tiny_untrained(path):
    """The CI tests' tiny model (test/support/ros_nodes.tiny_model), untrained: its bottleneck
    output is ~1e-6, far below what a gain of at most 1e4 can quantize."""
    net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                        input_size=(128, 96), bottlenecks={"s16": 8},
                                        depth_reference_focal=100.0))
    save_model(path, net.eval())
    return path


@pytest.fixture(scope="module")
def untrained_dir(tmp_path_factory):
    """``tiny_untrained``'s folder, shared by the tests that only read it."""
    return tiny_untrained(tmp_path_factory.mktemp("untrained") / "tiny")


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


def test_an_untrained_tiny_model_gets_valid_tables_that_code(untrained_dir, tmp_path):
    """The defect: gains of ~1e5 (the features' 1/std) failed the card's validation. Now the
    gains are clamped into the range, the card loads, and its codec codes; the log says the
    point could not reach its target."""
    lines = []
    result = train_entropy(untrained_dir, tiny_dataset(4), tmp_path / "out",
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


# The rate-trained fine-tune keeps every task: task weights, per-task distillation, the float
# network's anchor and which points shape the shared bottleneck.

def test_task_weights_are_the_inverse_of_the_teachers_losses():
    weights = task_weights({"detection": [2.0, 6.0], "segmentation": [0.25], "depth": []})
    assert weights == {"detection": 0.25, "segmentation": 4.0}  # never labelled: no weight
    assert task_weights({"depth": [0.0]}) == {"depth": 1000.0}  # a perfect teacher: bounded


def _outputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"heatmap": torch.randn(2, 3, 4, 4, generator=g),
            "size": torch.randn(2, 2, 4, 4, generator=g),
            "offset": torch.randn(2, 2, 4, 4, generator=g),
            "segmentation": torch.randn(2, 5, 8, 8, generator=g),
            "depth": torch.rand(2, 1, 8, 8, generator=g) + 0.5}


OUTPUTS_OF = {"detection": ["heatmap", "size", "offset"], "segmentation": ["segmentation"],
              "depth": ["depth"]}


def test_output_distance_counts_every_task_alike():
    teacher, student = _outputs(0), _outputs(1)
    assert float(output_distance(teacher, teacher, OUTPUTS_OF, {"segmentation": 0.2,
                                                               "depth": 0.1})) == 0.0
    # Only segmentation differs: a third of its term, whatever the detection's output count.
    seg_only = dict(teacher, segmentation=student["segmentation"])
    full = output_distance(seg_only, teacher, OUTPUTS_OF, {"segmentation": 0.2})
    alone = output_distance(seg_only, teacher, {"segmentation": ["segmentation"]},
                            {"segmentation": 0.2})
    assert math.isclose(float(full), float(alone) / 3, rel_tol=1e-5)
    # Segmentation: a KL of the class distributions (adding a constant to every logit changes
    # nothing), relative to the teacher's loss.
    shifted = dict(teacher, segmentation=teacher["segmentation"] + 3.0)
    assert float(output_distance(shifted, teacher, OUTPUTS_OF, {"segmentation": 0.2})) < 1e-6
    half = output_distance(seg_only, teacher, {"segmentation": ["segmentation"]},
                           {"segmentation": 0.4})
    assert math.isclose(float(half), float(alone) / 2, rel_tol=1e-5)


def test_head_outputs_names_each_tasks_outputs(untrained_dir):
    model, _ = load_model(untrained_dir)
    z = model.edge(torch.zeros(1, 3, 96, 128), "s16")
    outputs_of, out = head_outputs(model, "s16", model.server, z, "s16")
    assert outputs_of == {"detection": ["heatmap", "size", "offset"],
                          "segmentation": ["segmentation"], "depth": ["depth"]}
    assert set(out) == {"heatmap", "size", "offset", "segmentation", "depth"}
    assert not any(h._forward_hooks for h in model.heads.values())  # hooks removed


def codable_tiny(path):
    """The tiny model with its bottleneck output scaled to unit std, so the tables' gains
    reach byte targets and the rate term has something to pull."""
    net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                        input_size=(128, 96), bottlenecks={"s16": 8},
                                        depth_reference_focal=100.0)).eval()
    x = torch.from_numpy(tiny_dataset(4)["images"]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        net.bottlenecks["s16"].encoder[1].weight.mul_(1.0 / float(net.edge(x, "s16").std()))
    save_model(path, net, fp16=False)  # the scale (~1e6) is beyond float16
    return path


def _bottleneck_weights(folder):
    model, _ = load_model(folder)
    return {k: v.clone() for k, v in model.bottlenecks["s16"].state_dict().items()}


@pytest.fixture(scope="module")
def codable(tmp_path_factory):
    """``codable_tiny``'s folder and its bottleneck's weights (read only, by both ranges)."""
    path = codable_tiny(tmp_path_factory.mktemp("codable") / "base")
    return path, _bottleneck_weights(path)


@pytest.mark.parametrize("shape_bytes, moves", [((50.0, 5000.0), True), ((5000.0, 6000.0), False)],
                         ids=["in-range", "out-of-range"])
def test_only_points_within_shape_bytes_change_the_bottleneck(codable, tmp_path, shape_bytes,
                                                              moves):
    """A point outside the range learns its gains and density on the bottleneck as it is:
    with the anchor off, nothing else pulls the bottleneck, so it stays the base's."""
    base, before = codable
    result = train_entropy(base, tiny_dataset(4), tmp_path / "out", targets=(200.0,),
                           max_steps=3, batch_size=2, lr=1e-2, anchor=0.0,
                           shape_bytes=shape_bytes, progress=False, log=lambda _: None)
    after = _bottleneck_weights(tmp_path / "out" / "model")
    changed = any(not torch.equal(before[k], after[k]) for k in before)
    assert changed == moves
    assert result["training"].steps == 3


def test_total_bits_is_every_points_bits_in_one_pass():
    entropy = EntropyModel(4, [0.5, 2.0, 8.0]).train()
    y = _features(1.0)[:, :4]
    torch.manual_seed(0)
    together = float(entropy.total_bits(y))
    apart = float(sum(entropy(y, k)[1].sum() for k in range(3)))
    assert math.isclose(together, apart, rel_tol=0.01)  # the same up to the rate's noise
