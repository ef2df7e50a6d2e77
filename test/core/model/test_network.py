"""The split network: edge + server equals the whole network, for every split and backbone."""

import pytest
import torch

from mtl_split_core.backbones import BACKBONES
from mtl_split_core.model import ModelConfig, ModelConfigError, MultiTaskSplitNet

SIZE = (96, 64)  # (W, H): small, and H/32 is fractional on purpose


def _net(backbone="mobilenetv3_small", **kw):
    return MultiTaskSplitNet(ModelConfig(backbone=backbone, input_size=SIZE, **kw)).eval()


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_edge_then_server_equals_forward_for_every_split(backbone):
    net = _net(backbone)
    x = torch.rand(2, 3, SIZE[1], SIZE[0])
    with torch.no_grad():
        for split in net.split_names:
            z = net.edge(x, split)
            assert tuple(z.shape[1:]) == net.split_shape(split)
            full, parts = net(x, split), net.server(z, split)
            assert full.keys() == parts.keys()
            assert all(torch.equal(full[k], parts[k]) for k in full)


def test_bottleneck_shrinks_the_split_tensor_and_still_composes():
    net = _net(bottlenecks={"s8": 4})
    x = torch.rand(1, 3, SIZE[1], SIZE[0])
    with torch.no_grad():
        z = net.edge(x, "s8")
        assert z.shape[1] == 4
        assert all(torch.equal(a, b) for a, b in zip(net(x, "s8").values(),
                                                     net.server(z, "s8").values()))


def test_output_shapes_and_depth_range():
    net = _net()
    with torch.no_grad():
        out = net(torch.rand(1, 3, SIZE[1], SIZE[0]))
    assert out["heatmap"].shape == (1, 7, 8, 12)
    assert out["segmentation"].shape == (1, 11, 64, 96)
    d = out["depth"]
    assert d.shape == (1, 1, 64, 96) and (d > 0.1 - 1e-4).all() and (d < 60.0 + 1e-3).all()


def test_subset_of_tasks():
    net = _net(tasks=("depth",))
    with torch.no_grad():
        assert set(net(torch.rand(1, 3, SIZE[1], SIZE[0]))) == {"depth"}


def test_training_fake_quantizes_the_split_tensor():
    net = _net(train_quant_bits=4).train()
    x = torch.rand(2, 3, SIZE[1], SIZE[0])
    z = net.edge(x, "s16")
    # 4-bit codes: at most 16 distinct values per sample and channel.
    assert len(torch.unique(z[0, 0].detach())) <= 16
    net.eval()
    assert len(torch.unique(net.edge(x, "s16")[0, 0].detach())) > 16


def test_bad_configs_name_the_field():
    with pytest.raises(ModelConfigError, match="backbone"):
        ModelConfig(backbone="vgg")
    with pytest.raises(ModelConfigError, match="default_split"):
        ModelConfig(default_split="s64")
    with pytest.raises(ModelConfigError, match="input_size"):
        ModelConfig(input_size=(100, 75))
    with pytest.raises(ModelConfigError, match="bottlenecks"):
        ModelConfig(bottlenecks={"s8": 0})


def test_depth_scales_with_the_cameras_focal_length_when_the_card_has_a_reference():
    net = _net(depth_reference_focal=100.0)
    x = torch.rand(2, 3, SIZE[1], SIZE[0])
    with torch.no_grad():
        ref = net(x)["depth"]
        assert torch.allclose(net(x, focal=100.0)["depth"], ref)
        # The same image from a longer lens: everything is farther away.
        assert torch.allclose(net(x, focal=250.0)["depth"], ref * 2.5)
        per_sample = net(x, focal=torch.tensor([50.0, 200.0]))["depth"]
        assert torch.allclose(per_sample[0], ref[0] * 0.5)
        assert torch.allclose(per_sample[1], ref[1] * 2.0)
        z = net.edge(x)
        assert torch.equal(net.server(z, focal=250.0)["depth"], net(x, focal=250.0)["depth"])


def test_without_a_reference_focal_depth_ignores_the_focal_length():
    net = _net()
    x = torch.rand(1, 3, SIZE[1], SIZE[0])
    with torch.no_grad():
        assert torch.equal(net(x, focal=500.0)["depth"], net(x)["depth"])
    with pytest.raises(ModelConfigError, match="depth_reference_focal"):
        _net(depth_reference_focal=0.0)


def _composes_and_differs_only_at(own, other, x, splits):
    """At every split ``own``'s edge + server equals its forward, and its outputs are
    ``other``'s exactly except at ``splits``."""
    for split in own.split_names:
        full, parts = own(x, split), own.server(own.edge(x, split), split)
        assert all(torch.equal(full[k], parts[k]) for k in full)
        same = all(torch.equal(full[k], other(x, split)[k]) for k in full)
        assert same == (split not in splits), split


def test_per_split_heads_serve_their_split_and_leave_the_shared_ones_to_the_rest():
    torch.manual_seed(0)
    shared = _net(bottlenecks={"s8": 4, "s16": 8})
    torch.manual_seed(0)
    own = _net(bottlenecks={"s8": 4, "s16": 8}, per_split_heads=("s8", "s32"))
    # The shared neck and heads keep their state_dict keys: an older card's weights load
    # into them as they are; the new ones sit beside them.
    added = set(own.state_dict()) - set(shared.state_dict())
    assert set(shared.state_dict()) < set(own.state_dict())
    assert added and all(k.startswith(("split_necks.s8.", "split_necks.s32.",
                                       "split_heads.s8.", "split_heads.s32."))
                         for k in added)
    assert own.neck_and_heads("s16") == (own.neck, own.heads)
    assert own.neck_and_heads("s8") == (own.split_necks["s8"], own.split_heads["s8"])
    own.load_state_dict(shared.state_dict(), strict=False)
    x = torch.rand(2, 3, SIZE[1], SIZE[0])
    with torch.no_grad():
        for p in own.split_necks.parameters():
            p.add_(0.5)
        _composes_and_differs_only_at(own, shared, x, ("s8", "s32"))


def test_split_path_modules_are_everything_the_split_runs():
    net = _net(bottlenecks={"s8": 4, "s16": 8}, per_split_heads=("s8",))
    x = torch.rand(1, 3, SIZE[1], SIZE[0])
    for split in ("s16", "s8", "s4"):
        net.zero_grad(set_to_none=True)
        sum(o.sum() for o in net(x, split).values()).backward()
        used = {id(p) for p in net.parameters() if p.grad is not None}
        path = {id(p) for m in net.split_path_modules(split) for p in m.parameters()}
        assert used <= path, split  # (the neck's unused laterals get no gradient)
        own_s8 = {id(p) for p in net.split_necks["s8"].parameters()}
        assert (own_s8 <= path) == (split == "s8") == (not own_s8.isdisjoint(path))


@pytest.mark.parametrize("own", [("s16",), ("s8", "s8"), ("s64",)])
def test_per_split_heads_name_other_splits_than_the_default(own):
    with pytest.raises(ModelConfigError, match="per_split_heads"):
        _net(per_split_heads=own)


def test_a_split_with_its_own_server_half_runs_its_own_stages_and_stores_only_those():
    """``per_split_server``: the split's backbone stages after it are a copy of the shared ones
    (less the edge's stages, which it never runs), beside its own neck and heads; every other
    split runs the shared backbone as before."""
    torch.manual_seed(0)
    heads = _net(bottlenecks={"s8": 4, "s16": 8}, per_split_heads=("s8", "s32"))
    torch.manual_seed(0)
    own = _net(bottlenecks={"s8": 4, "s16": 8}, per_split_heads=("s8", "s32"),
               per_split_server=("s8", "s32"))
    added = set(own.state_dict()) - set(heads.state_dict())
    stage_keys = {k.removeprefix("split_stages.s8.") for k in added if "split_stages" in k}
    assert stage_keys and stage_keys < {k.removeprefix("backbone.") for k in
                                        own.state_dict() if k.startswith("backbone.")}
    assert not any(k.startswith("stem.") for k in stage_keys)  # the edge's stem is not there
    assert not any("split_stages.s32." in k for k in added)  # s32: no server stages at all
    assert all(k.startswith(("split_stages.s8.", "split_necks.s32.refine.")) for k in added)
    assert own.server_stages("s8") is own.split_stages["s8"]
    assert own.server_stages("s16") is own.backbone is own.server_stages("s32")
    # The copies start as the shared stages: with the same weights, s8 gives what it gave.
    own.load_state_dict(heads.state_dict(), strict=False)
    x = torch.rand(2, 3, SIZE[1], SIZE[0])
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(own(x, "s8").values(),
                                                     heads(x, "s8").values()))
        for p in own.split_stages.parameters():
            p.mul_(0.9)
        _composes_and_differs_only_at(own, heads, x, ("s8", "s32"))  # s32: its neck's steps


def test_split_path_modules_include_a_splits_own_server_stages():
    net = _net(bottlenecks={"s8": 4, "s16": 8}, per_split_heads=("s8",),
               per_split_server=("s8",))
    x = torch.rand(1, 3, SIZE[1], SIZE[0])
    sum(o.sum() for o in net(x, "s8").values()).backward()
    used = {id(p) for p in net.parameters() if p.grad is not None}
    path = {id(p) for m in net.split_path_modules("s8") for p in m.parameters()}
    stages = {id(p) for p in net.split_stages["s8"].parameters()}
    assert used <= path and stages <= used  # every copied stage weight is used at s8
    assert stages.isdisjoint(p for m in net.split_path_modules("s16") for p in m.parameters())


@pytest.mark.parametrize("own", [("s8",), ("s32", "s32")])
def test_per_split_server_names_splits_of_per_split_heads(own):
    with pytest.raises(ModelConfigError, match="per_split_server"):
        _net(per_split_heads=("s32",), per_split_server=own)
