"""Model cards: round trip, fingerprint, and every load failure gives a clear message."""

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from mtl_split_core.model import (
    ModelConfig,
    ModelLoadError,
    MultiTaskSplitNet,
    load_model,
    save_model,
)
from mtl_split_core.model.card import accepted_edges, edge_lineage, read_card


@pytest.fixture(scope="module")
def saved_once(tmp_path_factory):
    net = MultiTaskSplitNet(ModelConfig(backbone="mobilenetv3_small", input_size=(64, 64),
                                        bottlenecks={"s16": 8})).eval()
    path = tmp_path_factory.mktemp("saved") / "m"
    card = save_model(path, net, fp16=True)
    return net, card, path


@pytest.fixture()
def saved(saved_once, tmp_path):
    """(net, card, model folder) of a test's own: the tests edit the files and the weights, so
    each gets a copy of the folder and of the network saved once for the module."""
    net, card, path = saved_once
    shutil.copytree(path, tmp_path / "m")
    return copy.deepcopy(net), copy.deepcopy(card), tmp_path / "m"


def test_round_trip_same_outputs_and_fingerprint(saved):
    net, card, path = saved
    loaded, card2 = load_model(path)
    assert card2["fingerprint"] == card["fingerprint"] and len(card["fingerprint"]) == 16
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = net(x), loaded(x)
    for k in a:  # fp16 storage: small differences only
        assert (a[k] - b[k]).abs().max() <= 2e-2 * (1 + a[k].abs().max())
    assert card["split_points"][2] == {"name": "s16", "stride": 16, "channels": 48,
                                       "bottleneck": 8}


def test_fingerprint_changes_with_weights_and_split_config(saved, tmp_path):
    net, card, _ = saved
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    assert save_model(tmp_path / "b", net)["fingerprint"] != card["fingerprint"]


def _edit_card(path, **changes):
    card = json.loads((path / "card.json").read_text())
    card.update(changes)
    (path / "card.json").write_text(json.dumps(card))


@pytest.mark.parametrize("changes, message", [
    ({"card_version": 99}, "card_version"),
    ({"accepts_edge_fingerprint": 7}, "accepts_edge_fingerprint"),
    ({"accepts_edge_fingerprint": ["abc", ""]}, "accepts_edge_fingerprint"),
    ({"backbone": "vgg"}, "backbone"),
    ({"backbone": "resnet18"}, "fingerprint"),
    ({"bottlenecks": {"s16": 4}}, "fingerprint"),
])
def test_bad_cards(saved, changes, message):
    _, _, path = saved
    _edit_card(path, **changes)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_the_edges_a_card_serves_are_its_own_and_those_it_accepts(saved):
    _, card, path = saved
    own = card["fingerprint"]
    assert accepted_edges(card) == {own} and edge_lineage(card) == [own]
    _edit_card(path, accepts_edge_fingerprint="0123456789abcdef")  # a card from before lists
    assert accepted_edges(read_card(path)) == {own, "0123456789abcdef"}
    _edit_card(path, accepts_edge_fingerprint=["b", "a"])
    assert edge_lineage(read_card(path)) == sorted(["a", "b", own])


def test_missing_and_corrupt_files(saved, tmp_path):
    _, _, path = saved
    with pytest.raises(ModelLoadError, match="no model card"):
        load_model(tmp_path / "nothing")
    (path / "weights.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="unreadable"):
        load_model(path)
    (path / "weights.pt").unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        load_model(path)


def test_weights_of_another_architecture(saved, tmp_path):
    _, card, path = saved
    other = MultiTaskSplitNet(ModelConfig(backbone="resnet18", input_size=(64, 64)))
    other_card = save_model(tmp_path / "o", other)
    (path / "weights.pt").write_bytes((tmp_path / "o" / "weights.pt").read_bytes())
    _edit_card(path, fingerprint=other_card["fingerprint"])
    with pytest.raises(ModelLoadError):
        load_model(path)


def test_a_card_from_before_per_split_heads_loads_as_it_did(saved):
    """Cards written before ``per_split_heads`` and ``per_split_server`` existed (no such
    fields) load with one shared server half, under the same fingerprint; the shipped
    every_split is one of them (the default has a server half per split, below)."""
    net, card, path = saved
    old = json.loads((path / "card.json").read_text())
    del old["per_split_heads"], old["per_split_server"]
    (path / "card.json").write_text(json.dumps(old))
    loaded, _ = load_model(path)
    assert loaded.config.per_split_heads == () and len(loaded.split_necks) == 0
    assert loaded.config.per_split_server == () and len(loaded.split_stages) == 0
    assert set(loaded.state_dict()) == set(net.state_dict())
    models = Path(__file__).resolve().parents[3] / "models"
    every, every_card = load_model(models / "every_split")
    assert "per_split_heads" not in every_card and len(every.split_heads) == 0
    assert "per_split_server" not in every_card and len(every.split_stages) == 0
    default, default_card = load_model(models / "default")
    assert default_card["per_split_server"] == ["s8", "s32"]
    assert sorted(default.split_heads) == ["s32", "s8"]
    assert sorted(default.split_stages) == ["s8"]  # s32: no stage after it, its own neck


@pytest.fixture(scope="module")
def per_split_saved(tmp_path_factory):
    """A model with heads of its own at s8 and s4 and a server half of its own at s8: its card
    as saved, the model and card loaded back (the round trip, made once), and its folder."""
    net = MultiTaskSplitNet(ModelConfig(backbone="mobilenetv3_small", input_size=(64, 64),
                                        bottlenecks={"s16": 8}, per_split_heads=("s8", "s4"),
                                        per_split_server=("s8",)))
    path = tmp_path_factory.mktemp("per_split") / "m"
    card = save_model(path, net.eval())
    loaded, card2 = load_model(path)
    return card, loaded, card2, path


@pytest.mark.parametrize("damage", [
    {"per_split_heads": [], "per_split_server": []}, {"per_split_heads": ["s8", "s32"]},
    {"per_split_server": []}, {"per_split_server": ["s8", "s4"]}])
def test_per_split_heads_round_trip_and_must_match_the_weights(per_split_saved, tmp_path,
                                                               damage):
    card, loaded, card2, path = per_split_saved
    assert card["per_split_heads"] == ["s8", "s4"] and card["per_split_server"] == ["s8"]
    assert loaded.config.per_split_server == ("s8",)
    assert card2["fingerprint"] == card["fingerprint"]
    shutil.copytree(path, tmp_path / "m")  # the damage is this test's own
    _edit_card(tmp_path / "m", **damage)
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(tmp_path / "m")
