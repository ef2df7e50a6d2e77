"""EfficientNet-Lite0: strict ImageNet load, and the same features as the reference package;
its anti-aliased variant: the same weights, smoother under small shifts."""

import pytest
import torch

from mtl_split_core.backbones.efficientnet_lite import (
    SameConv2d,
    efficientnet_lite0,
    efficientnet_lite0_aa,
)


@pytest.fixture(scope="module")
def pretrained():
    return efficientnet_lite0(pretrained=True, classifier=True).eval()


def _reference(state, image_size):
    from efficientnet_lite_pytorch import EfficientNet
    ref = EfficientNet.from_name("efficientnet-lite0", image_size=image_size).eval()
    ref.load_state_dict(state, strict=True)
    return ref


def test_strict_load_and_parameter_count(pretrained):
    n = sum(p.numel() for p in pretrained.parameters())
    assert 4.6e6 < n < 4.7e6
    trunk = efficientnet_lite0(pretrained=True)
    assert not hasattr(trunk, "_fc")
    assert sum(p.numel() for p in trunk.parameters()) == n - (320 * 1280 + 2 * 1280 +
                                                              1280 * 1000 + 1000)


@pytest.mark.parametrize("size", [(224, 224), (160, 224)])
def test_features_and_logits_equal_reference(pretrained, size):
    ref = _reference(pretrained.state_dict(), size)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = pretrained(x)
        # The reference has no stage API: run its stem and blocks, tapping the stage ends.
        y = ref._swish(ref._bn0(ref._conv_stem(x)))
        taps = []
        for i, block in enumerate(ref._blocks):
            y = block(y)
            if i in (2, 4, 10, 15):
                taps.append(y)
        logits = pretrained.classify(x)
        ref_logits = ref(x)
    for a, b in zip(ours, taps):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()
    assert (logits - ref_logits).abs().max() <= 1e-4 * ref_logits.abs().max()


def test_imagenet_weights_are_meaningful(pretrained):
    # A trained net gives confident, input-dependent predictions; random weights do not.
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        p = pretrained.classify((x - mean) / std).softmax(-1)
    assert p.max() > 0.05


def test_classifier_dropped_raises_clearly():
    with pytest.raises(RuntimeError, match="classifier"):
        efficientnet_lite0().classify(torch.zeros(1, 3, 32, 32))


def _waves(dx: float) -> torch.Tensor:
    """A fixed synthetic scene of a dozen colour waves, moved right by ``dx`` pixels."""
    g = torch.Generator().manual_seed(3)
    y, x = torch.meshgrid(torch.arange(128.0), torch.arange(160.0) - dx, indexing="ij")
    img = torch.zeros(3, 128, 160)
    for _ in range(12):
        fx, fy, phase = torch.rand(3, generator=g) * torch.tensor([0.5, 0.5, 6.28])
        img += torch.rand(3, 1, 1, generator=g) * torch.sin(fx * x + fy * y + phase)
    return (img / 6 + 0.5).clamp(0, 1)[None]


def test_the_anti_aliased_variant_has_the_same_weights_and_stage_shapes():
    plain, aa = efficientnet_lite0(pretrained=True).eval(), efficientnet_lite0_aa(True).eval()
    assert aa.name == "efficientnet_lite0_aa"
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
        {k: v.shape for k, v in aa.state_dict().items()}
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in aa.state_dict().items())
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert [o.shape for o in plain(x)] == [o.shape for o in aa(x)]
    # Stride-1 convolutions are left as they are.
    assert {m.anti_alias for m in aa.modules() if isinstance(m, SameConv2d)} == {True, False}
    assert all(m.anti_alias == (m.stride == (2, 2))
               for m in aa.modules() if isinstance(m, SameConv2d))


def test_anti_aliasing_makes_the_s16_features_follow_a_2_pixel_shift_more_smoothly():
    # Why the variant exists (issue #23): below its stride the plain tensor changes a lot
    # when the image moves by a few pixels; blurring before each subsampling damps that.
    def change(net):
        with torch.no_grad():
            a, b = net.run(_waves(0), 0, 3)[-1], net.run(_waves(2), 0, 3)[-1]
        a, b = a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1]  # clear of the borders
        return float(((a - b) ** 2).mean() / a.var())
    plain = change(efficientnet_lite0(pretrained=True).eval())
    aa = change(efficientnet_lite0_aa(pretrained=True).eval())
    assert aa < 0.5 * plain, (aa, plain)  # 0.021 against 0.087 when written
