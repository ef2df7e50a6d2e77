"""EfficientNet-Lite0: strict ImageNet load, and the same features as the reference package."""

import pytest
import torch

from mtl_split_core.backbones.efficientnet_lite import efficientnet_lite0

torch.set_num_threads(2)


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
