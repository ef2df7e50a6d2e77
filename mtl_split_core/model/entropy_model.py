"""The learned part of the entropy-coded codecs: per-operating-point quantization gains and a
factorized density per channel (Ballé et al. 2018, "Variational image compression with a scale
hyperprior", appendix 6.1: a monotone cumulative built from small per-channel layers), trained
with a rate term; ``freeze`` turns them into the integer tables the codec uses
(``entropy_tables.py``). Only training needs this module; encoding and decoding use the tables.

One variable-rate model: operating point k scales the bottleneck output ``y`` by its own
per-channel gain, ``v = y * gain_k``, and codes ``rint(v)`` with its own density of ``v``.
Training: the rate is measured on ``v + U(-1/2, 1/2)`` (a differentiable stand-in for
rounding), the server half sees ``rint(v) / gain_k`` with a straight-through gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl_split_core.entropy_tables import (
    GAIN_RANGE,
    MAX_ALPHABET,
    PRECISION,
    TABLES_VERSION,
    integer_frequencies,
)

# Tail mass left outside a table's symbol range (clipped into its end symbols).
TAIL_MASS = 1e-6
# The gains training may reach: the tables' valid range (``GAIN_RANGE``), a little inside it
# because the card stores float32 gains and float32(1e-4) is below 1e-4.
GAIN_BOUNDS = (GAIN_RANGE[0] * 1.001, GAIN_RANGE[1] / 1.001)


class FactorizedDensity(nn.Module):
    """Independent learned densities of ``n`` scalar variables ("channels"): a cumulative
    c(v) = sigmoid(f(v)) with f monotone (softplus'd matrices, bounded tanh gates)."""

    def __init__(self, n: int, filters: Sequence[int] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        widths = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = math.log(math.expm1(1.0 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((n, widths[i + 1], widths[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(n, widths[i + 1], 1) - 0.5))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(n, widths[i + 1], 1)))

    def logits(self, v: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """f(v) of the variables ``rows`` for ``v`` of shape (len(rows), 1, M): the
        cumulative's logits, same shape."""
        x = v
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(matrix[rows]), x) + bias[rows]
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i][rows]) * torch.tanh(x)
        return x

    def likelihood(self, v: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """P(rint(v) == v) under the density for integer-centred ``v`` (as for ``logits``):
        the mass of [v - 1/2, v + 1/2], computed on the side of the median where it does not
        cancel."""
        lower, upper = self.logits(v - 0.5, rows), self.logits(v + 0.5, rows)
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))


class EntropyModel(nn.Module):
    """K operating points x C channels: gains and densities (see the module docstring)."""

    def __init__(self, channels: int, gains: Sequence[float]):
        super().__init__()
        self.channels, self.points = int(channels), len(gains)
        self.log_gain = nn.Parameter(
            torch.log(torch.tensor(gains, dtype=torch.float32))[:, None].repeat(1, channels))
        self.density = FactorizedDensity(self.points * self.channels)

    def gain(self, k: int) -> torch.Tensor:
        return torch.exp(self.log_gain[k])

    @torch.no_grad()
    def clamp_gains_(self) -> None:
        """Keep every gain within ``GAIN_BOUNDS``, so the frozen tables are valid whatever the
        rate term pushed towards (features of a tiny scale, e.g. an untrained model's, want
        gains beyond the range: clamped, their point sends fewer bytes than its target)."""
        self.log_gain.clamp_(math.log(GAIN_BOUNDS[0]), math.log(GAIN_BOUNDS[1]))

    def forward(self, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``y`` (N, C, H, W) -> (the decoder's input after coding at point k, bits per frame
        (N,)). Training: noisy rate, straight-through rounding; eval: the rounded values."""
        g = self.gain(k)[None, :, None, None]
        v = y.float() * g
        rounded = v + (torch.round(v) - v).detach()
        coded = v + torch.empty_like(v).uniform_(-0.5, 0.5) if self.training \
            else torch.round(v)
        n, c, h, w = v.shape
        flat = coded.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lik = self._density(k, flat).clamp_min(1e-9)
        bits = -torch.log2(lik).reshape(c, n, h * w).sum(dim=(0, 2))
        return (rounded / g).to(y.dtype), bits

    def total_bits(self, y: torch.Tensor) -> torch.Tensor:
        """Bits of ``y`` (N, C, H, W) summed over every operating point, noisy as in training:
        what ``forward`` gives point by point, in one pass over all the densities (fitting them
        is a few hundred of these; per point, small operations dominate on a CPU)."""
        v = y.float()[None] * torch.exp(self.log_gain)[:, None, :, None, None]
        v = v + torch.empty_like(v).uniform_(-0.5, 0.5)
        flat = v.permute(0, 2, 1, 3, 4).reshape(self.points * self.channels, 1, -1)
        return -torch.log2(self.density.likelihood(flat).clamp_min(1e-9)).sum()

    def _density(self, k: int, flat: torch.Tensor) -> torch.Tensor:
        """Likelihoods of point k's channels: the density's rows k*C .. (k+1)*C - 1."""
        return self.density.likelihood(flat, slice(k * self.channels, (k + 1) * self.channels))

    @torch.no_grad()
    def freeze(self, split: str, samples: torch.Tensor | None = None) -> dict:
        """The card's ``entropy`` block: per point the float32 gains, and per channel the
        integer table of the density over the symbols it gives noticeable mass
        (``TAIL_MASS`` left outside, folded into the end symbols), widened to every symbol
        of ``samples`` (y values (N, C, H, W), e.g. the training frames')."""
        from mtl_split_core.entropy_tables import OperatingPoint
        self.clamp_gains_()
        points = []
        for k in range(self.points):
            gain = self.gain(k).cpu().numpy().astype(np.float32)
            half = MAX_ALPHABET // 2
            grid = torch.arange(-half, half, dtype=torch.float32, device=self.log_gain.device)
            flat = grid.reshape(1, 1, -1).expand(self.channels, 1, -1).contiguous()
            pmf = self._density(k, flat).reshape(self.channels, -1).double().cpu().numpy()
            # A density with no mass on the symbol grid (values far beyond +-MAX_ALPHABET/2
            # at this gain): uniform, a valid if costly table rather than no table at all.
            lost = ~(np.isfinite(pmf).all(1) & (pmf.sum(1) > 0))
            pmf[lost] = 1.0
            seen = None
            if samples is not None:
                y = samples.float().permute(1, 0, 2, 3).reshape(self.channels, -1).cpu().numpy()
                probe = OperatingPoint(gain, np.full(self.channels, -half, np.int64),
                                       tuple(np.ones(MAX_ALPHABET, np.int64)
                                             for _ in range(self.channels)))
                index = probe.symbols(y)
                seen = (index.min(1), index.max(1))
            lo, freqs = [], []
            for c in range(self.channels):
                cdf = np.cumsum(pmf[c]) / pmf[c].sum()
                first = int(np.searchsorted(cdf, TAIL_MASS))
                last = int(np.searchsorted(cdf, 1.0 - TAIL_MASS))
                if seen is not None:
                    first, last = min(first, int(seen[0][c])), max(last, int(seen[1][c]))
                last = max(last, first + 1)
                p = pmf[c, first:last + 1].copy()
                p[0] += pmf[c, :first].sum()
                p[-1] += pmf[c, last + 1:].sum()
                lo.append(first - half)
                freqs.append([int(v) for v in integer_frequencies(p)])
            points.append({"gain": [float(v) for v in gain], "lo": lo, "freqs": freqs})
        return {"version": TABLES_VERSION, "split": split, "precision": PRECISION,
                "operating_points": points}
