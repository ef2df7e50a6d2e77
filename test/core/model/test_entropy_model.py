"""EntropyModel: gains and factorized densities trained by their rate, frozen into tables whose
real coded size matches the density's estimate."""

import numpy as np
import pytest
import torch

from mtl_split_core.codec import decode, encode
from mtl_split_core.entropy_tables import PRECISION, EntropyTables
from mtl_split_core.model.entropy_model import EntropyModel, FactorizedDensity


def _latents(n: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.5, 3.0, 4)[None, :, None, None]
    return torch.randn((n, 4, 6, 8), generator=g) * scale + 0.3


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    model = EntropyModel(4, [0.5, 2.0])
    y = _latents()
    opt = torch.optim.Adam(model.density.parameters(), lr=2e-2)
    for step in range(120):
        bits = model(y, step % 2)[1].mean()
        opt.zero_grad()
        bits.backward()
        opt.step()
    return model.eval(), y


def test_densities_are_probabilities():
    density = FactorizedDensity(3)
    v = torch.arange(-200, 201, dtype=torch.float32).reshape(1, 1, -1).expand(3, 1, -1)
    p = density.likelihood(v.contiguous())
    assert (p >= 0).all() and torch.allclose(p.sum(-1), torch.ones(3, 1), atol=1e-4)


def test_training_mode_adds_noise_and_eval_rounds():
    model = EntropyModel(4, [1.5])
    y = _latents(4)
    y_hat, bits = model.eval()(y, 0)
    gain = model.gain(0)[None, :, None, None]
    assert torch.equal(y_hat * gain, torch.round(y * gain)) or torch.allclose(
        y_hat * gain, torch.round(y * gain), atol=1e-5)
    assert bits.shape == (4,) and (bits > 0).all()
    y_hat.sum().backward()  # straight-through: y gets the identity gradient
    model.train()
    y.requires_grad_(True)
    out, _ = model(y, 0)
    out.sum().backward()
    assert torch.allclose(y.grad, torch.ones_like(y))


def test_frozen_tables_code_to_about_the_estimated_size(fitted):
    model, y = fitted
    block = model.freeze("s16", y)
    tables = EntropyTables(block)
    assert tables.channels == 4 and tables.codec_ids == ("eb-0/1", "eb-1/1")
    for k, codec in enumerate(tables.codec_ids):
        with torch.no_grad():
            estimate = float(model(y, k)[1].mean()) / 8
            gain = model.gain(k)[:, None, None]
        coded = np.mean([len(encode(yi, codec, tables=tables).data) - 6 for yi in y])
        assert abs(coded - estimate) < 0.1 * estimate + 8, (codec, coded, estimate)
        for yi in y[:3]:
            enc = encode(yi, codec, tables=tables)
            expected = torch.round(yi * gain) / gain
            np.testing.assert_allclose(decode(enc, tables=tables), expected.numpy(), atol=1e-5)


def test_freeze_covers_every_sample_symbol_and_sums_exactly(fitted):
    model, y = fitted
    outlier = y.clone()
    outlier[0, 2, 0, 0] = 500.0
    block = model.freeze("s16", outlier)
    point = EntropyTables(block).points[1]
    assert point.hi[2] >= round(500.0 * float(point.gain[2]))
    assert all(sum(f) == 2**PRECISION and min(f) >= 1
               for p in block["operating_points"] for f in p["freqs"])
