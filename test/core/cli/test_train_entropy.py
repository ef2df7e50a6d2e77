"""`mtl-split train-eb` on the CI tests' tiny untrained model: tables it can freeze, or for a
model whose features no table can code, one line and exit 2."""

import json
from pathlib import Path

import pytest
import torch

from mtl_split_core.cli.main import main
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.model.card import accepted_edges, load_model

from .test_train import write_sim_folder

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


@pytest.mark.slow
def test_train_eb_context_and_context_only_add_ebc_codecs_with_ebs_symbols(tmp_path):
    import numpy as np

    from mtl_split_core.codec import decode, encode
    from mtl_split_core.entropy_tables import tables_of

    data = write_sim_folder(tmp_path / "ds", ("train",) * 4)
    assert main(["train-eb", "--model", tiny_model(tmp_path / "tiny"), "--data", str(data),
                 "--out", str(tmp_path / "eb"), "--context", *QUICK]) == 0
    _, card = load_model(tmp_path / "eb" / "model")
    assert tables_of(card["entropy"]).codec_ids == ("eb-0/1", "ebc-0/1")
    # --context-only on a card with eb tables only: the same weights and eb tables.
    plain = tmp_path / "plain"
    assert main(["train-eb", "--model", tiny_model(tmp_path / "tiny2"), "--data", str(data),
                 "--out", str(plain), *QUICK]) == 0
    assert main(["train-eb", "--model", str(plain / "model"), "--data", str(data), "--out",
                 str(tmp_path / "ebc"), "--context-only", "--codec", "ebc-0/1"]) == 0
    model, new = load_model(tmp_path / "ebc" / "model")
    _, old = load_model(plain / "model")
    assert new["codec"] == "ebc-0/1" and new["trained_context"]["frames"] == 4
    assert new["entropy"]["operating_points"] == old["entropy"]["operating_points"]
    assert (tmp_path / "ebc" / "model" / "weights.pt").read_bytes() == \
        (plain / "model" / "weights.pt").read_bytes()
    tables = tables_of(new["entropy"])
    z = np.random.default_rng(0).normal(0, 1e-6, (8, 6, 8)).astype(np.float32)
    assert decode(encode(z, "ebc-0/1", tables=tables), tables=tables).tobytes() == \
        decode(encode(z, "eb-0/1", tables=tables), tables=tables).tobytes()


def test_context_only_needs_entropy_tables_and_offers_their_codecs(tmp_path, capsys):
    data = write_sim_folder(tmp_path / "ds", ("train",) * 2)
    out = tmp_path / "ebc"
    assert main(["train-eb", "--model", tiny_model(tmp_path / "tiny"), "--data", str(data),
                 "--out", str(out), "--context-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no entropy tables" in err
    shipped = SHIPPED  # 6 points: eb-0..5, ebc-0..5
    assert main(["train-eb", "--model", str(shipped), "--data", str(data), "--out",
                 str(out), "--context-only", "--codec", "ebc-6/1"]) == 2
    assert "the new card's codecs are" in capsys.readouterr().err
    assert not out.exists()


def sequences_npz(path: Path, groups: list[int]) -> str:
    """A labelled sequences npz (bench/rate_accuracy.py's cache format) of tiny frames."""
    import numpy as np

    from mtl_split_core.data.sim_sequences import save_frames
    from support.tiny_data import tiny_dataset

    n = len(groups)
    k = np.tile(np.array([100.0, 0, 48, 0, 100.0, 32, 0, 0, 1]), (n, 1))
    save_frames({**tiny_dataset(n), "k": k, "group_of": np.asarray(groups)}, path)
    return str(path)


SHIPPED = Path(__file__).parents[3] / "models" / "default"  # eb, ebc and temporal tables


def test_temporal_context_adds_conditional_codecs_and_keeps_the_edge(tmp_path):
    import numpy as np

    from mtl_split_core.entropy_tables import tables_of
    from mtl_split_core.temporal_codec import TemporalDecoder, TemporalEncoder

    npz = sequences_npz(tmp_path / "seq.npz", [0, 0, 0, 1, 1, 1])
    out = tmp_path / "ebct"
    assert main(["train-eb", "--model", str(SHIPPED), "--temporal-context", npz,
                 "--temporal-points", "3", "--out", str(out)]) == 0
    new = json.loads((out / "model" / "card.json").read_text())
    old = json.loads((SHIPPED / "card.json").read_text())
    assert new["trained_temporal_context"]["sequences"] == 2
    # Robots of the base and of every edge it served: the same edge bit for bit.
    assert new["accepts_edge_fingerprint"] == sorted(accepted_edges(old))
    assert {k: v for k, v in new["entropy"].items() if k not in ("version", "temporal")} == \
        {k: v for k, v in old["entropy"].items() if k not in ("version", "temporal")}
    tables = tables_of(new["entropy"])
    assert [tables.has_temporal(k) for k in range(6)] == [False] * 3 + [True] + [False] * 2
    xs = np.random.default_rng(0).normal(0, 0.3, (3, 16, 4, 5)).astype(np.float32)
    enc, dec = TemporalEncoder("t30-c0-ebc-3/1", tables), TemporalDecoder()
    for x in xs:
        assert np.array_equal(dec.decode(enc.encode(x), tables=tables), enc._reference)


@pytest.mark.parametrize(("eb_only", "groups", "extra", "message"), [
    (True, [0, 0], [], "has no context tables"),
    (False, [0, 1], [], "at least 2 frames"),
    (False, [0, 0], ["--temporal-points", "6"], "the model has 6"),
])
def test_temporal_context_errors_are_one_line_and_exit_2(tmp_path, capsys, eb_only, groups,
                                                         extra, message):
    from support.entropy_blocks import default_with_fewer_tables

    npz = sequences_npz(tmp_path / "seq.npz", groups)
    out = tmp_path / "out"
    model = default_with_fewer_tables(tmp_path / "eb", context=False) if eb_only else SHIPPED
    assert main(["train-eb", "--model", str(model), "--temporal-context",
                 npz, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not out.exists()


def test_temporal_points_and_a_missing_data_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-eb", "--temporal-context", "x.npz", "--out", str(tmp_path / "o"),
              "--temporal-points", "3,3"])
    assert exit_info.value.code == 2
    assert main(["train-eb", "--out", str(tmp_path / "o")]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main(["train-eb", "--temporal-context", str(tmp_path / "none.npz"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "not a labelled frames npz" in capsys.readouterr().err
