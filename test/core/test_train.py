"""Training: a tiny CPU run lowers the loss and writes a loadable model card; partial labels,
weighted mixing and fine-tuning (with a frozen edge the server then serves the old edge)."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, load_model, save_model
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import PacketRejected, ServerRunner
from mtl_split_core.train import epoch_order, labelled_frames, train
from support.tiny_data import tiny_dataset

TINY = ModelConfig(backbone="mobilenetv3_small", input_size=(96, 64), bottlenecks={"s16": 8},
                   depth_reference_focal=100.0)
FAST = dict(epochs=1, batch_size=4, lr=3e-3, device="cpu", pretrained=False, progress=False)


@pytest.mark.slow
def test_tiny_training_lowers_the_loss(tmp_path):
    config = ModelConfig(backbone="mobilenetv3_small", input_size=(96, 64),
                         bottlenecks={"s16": 8})
    result = train(config, tiny_dataset(), tiny_dataset(4), tmp_path, epochs=12, batch_size=4,
                   lr=3e-3, device="cpu", pretrained=False, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert float(rows[-1]["segmentation"]) < float(rows[0]["segmentation"])
    assert float(rows[-1]["depth"]) < float(rows[0]["depth"])
    model, card = load_model(tmp_path / "model")
    assert card["trained"]["epochs"] == 12 and "float" in result and "codec" in result


def test_an_epoch_is_a_permutation_or_drawn_by_weight_reproducibly():
    def gen(seed=5):
        return torch.Generator().manual_seed(seed)
    assert torch.equal(epoch_order(10, 8, None, gen()), torch.randperm(10, generator=gen()))
    # Source A: 10 frames with 70% of the mass, source B: 90 frames with 30%.
    weights = torch.tensor([0.7 / 10] * 10 + [0.3 / 90] * 90, dtype=torch.float64)
    draws = epoch_order(100, 20000, weights, gen())
    assert torch.equal(draws, epoch_order(100, 20000, weights, gen()))
    assert (draws < 10).float().mean() == pytest.approx(0.7, abs=0.02)
    counts = torch.bincount(draws, minlength=100).float()
    assert counts[:10].mean() / counts[10:].mean() == pytest.approx(21.0, rel=0.15)


def test_flags_saying_everything_is_labelled_train_exactly_as_without(tmp_path):
    plain = train(TINY, tiny_dataset(), None, tmp_path / "a", max_steps=2, **FAST)
    data = tiny_dataset()
    n = len(data["images"])
    data.update({f"has_{t}": np.ones(n, bool) for t in TINY.tasks})
    data["sample_weight"] = np.full(n, 0.125, np.float32)      # uniform: a permutation
    data["ignore_boxes"] = [np.zeros((0, 4), np.float32)] * n
    flagged = train(TINY, data, None, tmp_path / "b", max_steps=2, **FAST)
    cards = [json.loads((tmp_path / d / "model" / "card.json").read_text()) for d in "ab"]
    assert plain == flagged == {} and cards[0]["fingerprint"] == cards[1]["fingerprint"]


def test_frames_labelled_for_none_of_the_tasks_are_left_out():
    data = tiny_dataset(4)
    data["has_depth"] = np.array([True, False, True, False])
    data["has_segmentation"] = np.array([False, False, True, False])
    assert labelled_frames(data, ("depth", "segmentation")).tolist() == [1, 0, 1, 0]
    assert labelled_frames(data, ("depth", "detection")).all()  # no flags: all labelled
    data["has_depth"][:] = False
    data["has_segmentation"][:] = False
    with pytest.raises(ValueError, match="no training frame"):
        train(dataclasses.replace(TINY, tasks=("depth", "segmentation")), data, None, "/none",
              **FAST)


def _depth_only(n=8):
    """Frames labelled for depth only (placeholders elsewhere), with ignore regions, unknown
    intrinsics on half of them and uneven sampling weights."""
    data = tiny_dataset(n, seed=3)
    data["has_detection"] = np.zeros(n, bool)
    data["has_segmentation"] = np.zeros(n, bool)
    data["has_depth"] = np.ones(n, bool)
    data["boxes"] = [np.zeros((0, 4), np.float32)] * n
    data["labels"] = [np.zeros(0, np.int64)] * n
    data["seg"][:] = 255
    data["ignore_boxes"] = [np.array([[0, 0, 30, 20]], np.float32)] * n
    data["k"] = np.tile(np.array([100.0, 0, 48, 0, 100.0, 32, 0, 0, 1]), (n, 1))
    data["k"][::2] = np.nan
    data["sample_weight"] = np.linspace(1, 3, n).astype(np.float32)
    return data


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base") / "model"
    save_model(path, MultiTaskSplitNet(TINY).eval())
    return path


# Loading a model (and a runner) costs more than a training step of this tiny network: the
# tests only read the base, so it is loaded once per module.
@pytest.fixture(scope="module")
def base(base_dir):
    """The base model and its card, as loaded from ``base_dir`` (read, never changed)."""
    return load_model(base_dir)


@pytest.fixture(scope="module")
def base_edge(base_dir):
    """A robot running the base model's edge (at its default split, s16)."""
    return EdgeRunner.from_path(str(base_dir), device="cpu")


@pytest.fixture(scope="module")
def base_server(base_dir):
    return ServerRunner.from_path(str(base_dir), device="cpu")


@pytest.fixture(scope="module")
def frozen_tune(base_dir, tmp_path_factory):
    """A frozen-edge fine-tune of the base on depth-only frames: its folder, model and card."""
    out = tmp_path_factory.mktemp("frozen")
    train(dataclasses.replace(TINY, name="tuned"), _depth_only(), None, out,
          max_steps=3, init_model=base_dir, freeze_edge=True, **FAST)
    return (out / "model", *load_model(out / "model"))


def _params(model, prefix):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(prefix)}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_frozen_edge_stays_bit_identical_and_the_server_accepts_the_old_edge(
        base, base_edge, base_server, frozen_tune):
    tuned_dir, tuned, card = frozen_tune
    base, base_card = base
    assert base.edge_state_dict().keys() == tuned.edge_state_dict().keys()
    assert _equal(base.edge_state_dict(), tuned.edge_state_dict())  # weights and BN statistics
    # Unlabelled tasks: their heads got no gradient; the depth head and the neck learned.
    for prefix in ("heads.detection.", "heads.segmentation."):
        assert _equal(_params(base, prefix), _params(tuned, prefix)), prefix
    for prefix in ("heads.depth.", "neck.", "bottlenecks.s16.decoder."):
        assert not _equal(_params(base, prefix), _params(tuned, prefix)), prefix
    assert card["accepts_edge_fingerprint"] == [base_card["fingerprint"]]
    assert base_card["fingerprint"] != card["fingerprint"]
    assert card["fine_tuned_from"] == {"name": base_card["name"],
                                       "fingerprint": base_card["fingerprint"],
                                       "fresh_heads": [], "edge_frozen": True}
    assert card["name"] == "tuned" and card["input_size"] == [96, 64]
    # A robot still running the base model's edge is served by the tuned server.
    rgb = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    old_edge = base_edge(rgb)
    new_edge = EdgeRunner.from_path(str(tuned_dir), device="cpu")(rgb)
    server = ServerRunner.from_path(str(tuned_dir), device="cpu")
    assert old_edge.tensor.data == new_edge.tensor.data
    np.testing.assert_array_equal(server(old_edge).depth, server(new_edge).depth)
    # Not any edge, though: the base's server does not take the tuned edge's packets, and
    # nobody takes another model's.
    with pytest.raises(PacketRejected, match="fingerprint"):
        base_server(new_edge)
    with pytest.raises(PacketRejected, match="fingerprint"):
        server(dataclasses.replace(old_edge, model_fingerprint="0123456789abcdef"))


def test_new_classes_reinitialise_their_heads_and_a_second_frozen_tune_serves_both_edges(
        base_dir, base, base_edge, frozen_tune, tmp_path):
    """A frozen-edge tune of a frozen-edge tune serves the robots of both models before it:
    the root's and the first tune's (their edges are the same bit for bit)."""
    first_dir, _, first = frozen_tune  # the first frozen-edge tune of the base
    city = dataclasses.replace(TINY, detection_classes=("car",),
                               segmentation_classes=("road", "car"))
    data = tiny_dataset()  # fully labelled; class 0 = car, segmentation 4 -> 1 (car)
    data["seg"] = np.where(data["seg"] == 4, 1, 0).astype(np.uint8)
    train(city, data, None, tmp_path / "b", max_steps=1, init_model=first_dir,
          freeze_edge=True, **FAST)
    _, root = base
    model, card = load_model(tmp_path / "b" / "model")
    assert card["fine_tuned_from"]["fresh_heads"] == ["detection", "segmentation"]
    assert card["detection_classes"] == ["car"] and card["segmentation_classes"] == [
        "road", "car"]
    assert model.heads["detection"].heatmap[-1].out_channels == 1
    assert card["accepts_edge_fingerprint"] == sorted([root["fingerprint"],
                                                       first["fingerprint"]])
    rgb = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    server = ServerRunner.from_path(str(tmp_path / "b" / "model"), device="cpu")
    for edge in (base_edge, EdgeRunner.from_path(str(first_dir), device="cpu")):
        server(edge(rgb))  # both fleets' packets are served
    # Without --freeze-edge the edge learns and no other edge is accepted.
    train(TINY, tiny_dataset(), None, tmp_path / "c", max_steps=1, init_model=base_dir, **FAST)
    free = json.loads((tmp_path / "c" / "model" / "card.json").read_text())
    assert "accepts_edge_fingerprint" not in free
    assert free["fine_tuned_from"]["edge_frozen"] is False


def test_freezing_the_edge_needs_a_model_to_start_from(tmp_path):
    with pytest.raises(ValueError, match="init_model"):
        train(TINY, tiny_dataset(), None, tmp_path, freeze_edge=True, **FAST)


def _distance_at_default_split(model_dir, base):
    """How far a tuned model's outputs at the base's split are from the base's (fixed frames)."""
    from mtl_split_core.model.losses import scaled_output_distance
    tuned, _ = load_model(model_dir)
    x = torch.rand(4, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float(scaled_output_distance(tuned(x, "s16"), base(x, "s16")))


def test_distillation_keeps_the_base_split_closer_to_the_base_while_adding_splits(
        base_dir, base, tmp_path):
    """Adding s32 with labels alone moves what the model does at s16; the distillation term
    pulls it back towards the base model's outputs on the same frames. Four steps of two
    frames (one epoch, one checkpoint) suffice: the distilled distance is ~1/25 of the
    undistilled one (eight steps of four: ~1e-5; three steps: ~1/4)."""
    two = dataclasses.replace(TINY, bottlenecks={"s16": 8, "s32": 8})
    runs = {}
    for weight in (0.0, 50.0):
        out = tmp_path / f"d{weight:g}"
        train(two, tiny_dataset(), None, out, split=("s16", "s32"), max_steps=4,
              init_model=base_dir, distill=weight, **{**FAST, "lr": 1e-2, "batch_size": 2})
        runs[weight] = _distance_at_default_split(out / "model", base[0])
    assert runs[50.0] < 0.5 * runs[0.0], runs
    card = json.loads((tmp_path / "d50" / "model" / "card.json").read_text())
    assert card["trained"]["distill"] == 50.0
    with pytest.raises(ValueError, match="init_model"):
        train(TINY, tiny_dataset(), None, tmp_path / "x", distill=1.0, **FAST)


@pytest.mark.parametrize("server", [False, True], ids=["heads", "server"])
def test_per_split_heads_keep_the_default_split_bit_for_bit_while_the_others_learn(
        base_dir, base, base_edge, base_server, tmp_path, server):
    """New splits with a neck and heads of their own (and with ``per_split_server`` their own
    backbone stages after the split and neck refinement steps too): every weight (and
    batch-norm statistic) the base's default split uses stays, so its outputs are the base's
    exactly; the new splits' bottlenecks, necks and heads (and stages) learn, and the runners
    serve them. Four steps (the same split draws, s8 and s32 each drawn) of two frames in
    one epoch."""
    every = dataclasses.replace(TINY, bottlenecks={"s8": 4, "s16": 8, "s32": 8})
    train(every, tiny_dataset(), None, tmp_path, split=("s16", "s8", "s32"), max_steps=4,
          init_model=base_dir, per_split_heads=not server, per_split_server=server,
          **{**FAST, "batch_size": 2})
    base, base_card = base
    tuned, card = load_model(tmp_path / "model")
    assert card["per_split_heads"] == ["s8", "s32"] and card["default_split"] == "s16"
    assert card["per_split_server"] == (["s8", "s32"] if server else [])
    if server:  # the s8 stages learned from the base's (its statistics kept); s32 refines
        stages = tuned.split_stages["s8"].state_dict()
        shared = base.backbone.state_dict()
        moved = [k for k, v in stages.items() if not torch.equal(v, shared[k])]
        assert any(k.endswith(".weight") for k in moved)
        assert not any(k.endswith(("running_mean", "running_var")) for k in moved)
        refine = _params(tuned, "split_necks.s32.refine.")
        assert refine and any(p.abs().sum() > 0 for n, p in refine.items()
                              if n.endswith("4.weight"))  # no longer the identity
    assert card["fine_tuned_from"]["frozen_split"] == "s16"
    assert card["trained"]["splits"] == ["s16", "s8", "s32"]
    # The base had no s8/s32 bottleneck: its robots can only send s16, computed bit for bit.
    assert card["accepts_edge_fingerprint"] == [base_card["fingerprint"]]
    assert base_card["fingerprint"] != card["fingerprint"]
    tuned_state = tuned.state_dict()
    assert all(torch.equal(tuned_state[k], v) for k, v in base.state_dict().items())
    x = torch.rand(3, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before, after = base(x, "s16"), tuned(x, "s16")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k])
                                                 for k in before)
    for split in ("s8", "s32"):  # learned from the copies of the shared neck and heads
        for own, shared in ((tuned.split_necks[split], base.neck),
                            (tuned.split_heads[split], base.heads)):
            assert not _equal(dict(own.named_parameters()), dict(shared.named_parameters()))
    # The runners: an s16 packet gets the base's outputs, an s8 one the new neck and heads'.
    rgb = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    assert base_edge.split == "s16"
    from_base = base_edge(rgb)
    old = base_server(from_base)
    new = ServerRunner.from_path(str(tmp_path / "model"), device="cpu")
    updated = EdgeRunner.from_path(str(tmp_path / "model"), split="s16", device="cpu")
    np.testing.assert_array_equal(old.depth, new(updated(rgb)).depth)
    np.testing.assert_array_equal(old.depth, new(from_base).depth)  # a robot not updated
    updated.configure(split="s8")  # the updated robot moves to a new split
    packet = updated(rgb)
    assert updated.split == "s8" and packet.split_index == updated.split_index
    at_s8 = new(packet)
    assert at_s8.depth.shape == old.depth.shape and np.isfinite(at_s8.depth).all()


def test_per_split_heads_need_a_base_and_a_split_besides_its_default(base_dir, tmp_path):
    with pytest.raises(ValueError, match="init_model"):
        train(TINY, tiny_dataset(), None, tmp_path / "a", per_split_heads=True, **FAST)
    with pytest.raises(ValueError, match="other than the default split s16"):
        train(TINY, tiny_dataset(), None, tmp_path / "b", split="s16", init_model=base_dir,
              per_split_heads=True, **FAST)
