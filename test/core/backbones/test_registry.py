"""Every registered backbone honours the 4-stage contract."""

import pytest
import torch

from mtl_split_core.backbones import (
    BACKBONE_SPECS,
    BACKBONES,
    SPLIT_NAMES,
    STRIDES,
    build_backbone,
    has_pretrained,
    register_backbone,
)

PARAM_COUNTS = {"efficientnet_lite0": (2.9e6, 3.0e6),  # trunk without the classifier
                "efficientnet_lite0_aa": (2.9e6, 3.0e6),  # the same weights
                "resnet18": (11.1e6, 11.3e6), "mobilenetv3_small": (0.9e6, 0.95e6)}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_stage_contract(name):
    net = build_backbone(name).eval()
    assert net.name == name and net.strides == STRIDES and net.split_names == SPLIT_NAMES
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        outs = net(x)
        stepwise = []
        y = x
        for i in range(4):
            y = net.stage(i, y)
            stepwise.append(y)
        again = net(x)
    for out, step, again_out, c, s in zip(outs, stepwise, again, net.channels, STRIDES):
        assert out.shape == (1, c, 96 // s, 128 // s)
        assert torch.equal(out, step) and torch.equal(out, again_out)
    lo, hi = PARAM_COUNTS[name]
    assert lo < sum(p.numel() for p in net.parameters()) < hi


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_split_runs_compose(name):
    net = build_backbone(name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full = net(x)
        for i in range(4):
            head = net.run(x, 0, i + 1)
            tail = net.run(head[-1], i + 1, 4)
            assert all(torch.equal(a, b) for a, b in zip(head + tail, full))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_sizes_not_multiple_of_32_round_up(name):
    net = build_backbone(name).eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 70, 90))
    # Each stride-2 layer rounds up (ceil), as TensorFlow 'SAME' and padding=k//2 both do.
    assert outs[-1].shape[-2:] == (3, 3)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_gradients_reach_the_first_layer(name):
    net = build_backbone(name).train()
    net(torch.randn(2, 3, 64, 64))[-1].mean().backward()
    first = next(p for p in net.parameters() if p.dim() == 4)
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(KeyError, match="resnet18"):
        build_backbone("vgg16")


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small"])
def test_no_offline_weights_for_random_init_backbones(name):
    with pytest.raises(FileNotFoundError, match="offline"):
        build_backbone(name, pretrained=True)


def test_registry_says_which_backbones_have_offline_weights():
    assert has_pretrained("efficientnet_lite0")
    assert not has_pretrained("resnet18") and not has_pretrained("mobilenetv3_small")
    assert set(BACKBONE_SPECS) == set(BACKBONES)
    assert all(BACKBONES[n] is s.factory for n, s in BACKBONE_SPECS.items())
    with pytest.raises(KeyError, match="efficientnet_lite0"):
        has_pretrained("vgg16")


def test_a_registered_backbone_builds_by_name():
    register_backbone("tiny_resnet_alias", BACKBONES["resnet18"])
    try:
        assert not has_pretrained("tiny_resnet_alias")
        assert build_backbone("tiny_resnet_alias").channels == build_backbone("resnet18").channels
        with pytest.raises(ValueError, match="already registered"):
            register_backbone("tiny_resnet_alias", BACKBONES["resnet18"])
        with pytest.raises(FileNotFoundError, match="offline.*efficientnet_lite0"):
            build_backbone("tiny_resnet_alias", pretrained=True)
    finally:
        del BACKBONE_SPECS["tiny_resnet_alias"], BACKBONES["tiny_resnet_alias"]
