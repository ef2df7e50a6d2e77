"""Are the split tensor's symbols shift-equivariant below the split's stride? Shift benchmark
frames by whole pixels (no parallax, no new content but the border), take eb-k's symbols of
the shifted image, and count how many equal (a) the unshifted frame's co-located symbols and
(b) the unshifted frame's symbols warped by the shift (the integer bilinear warp of
temporal_mc_analysis.py, the shift in 1/64 positions). If the features moved with the image,
(b) would match better than (a) at every sub-position shift. The same for the float tensors
before quantization: the mean squared error of (a) and of (b) (a float bilinear warp),
relative to the shifted tensor's variance.

``--anti-alias``: then again with every stride-2 convolution of the backbone anti-aliased
(run at stride 1, blurred by [1 2 1]^2 / 16, every other position kept; Zhang 2019) *without*
fine-tuning: a proxy for what an anti-aliased edge could give the temporal codecs, not a
model (its accuracy is not measured; the card's quantizer meets a shifted distribution).

    PYTHONPATH=. python bench/entropy/shift_equivariance.py --model models/default --anti-alias
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import temporal_context_analysis as tca  # noqa: E402
import temporal_mc_analysis as mc  # noqa: E402

from mtl_split_core.backbones.efficientnet_lite import SameConv2d  # noqa: E402
from mtl_split_core.entropy_tables import tables_of  # noqa: E402
from mtl_split_core.runtime.model_files import load_model_param  # noqa: E402


def shifted(images: np.ndarray, dx: int) -> np.ndarray:
    """Images (N, H, W, 3) moved right by ``dx`` pixels, the left border repeated."""
    pad = np.repeat(images[:, :, :1], dx, axis=2)
    return np.concatenate([pad, images[:, :, :images.shape[2] - dx]], axis=2)


class BlurredStride(nn.Module):
    """A stride-2 convolution run at stride 1, blurred, then subsampled (anti-aliased)."""

    def __init__(self, conv: SameConv2d):
        super().__init__()
        self.conv = conv
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None]) / 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride, self.conv.stride = self.conv.stride, (1, 1)
        try:
            y = self.conv(x)
        finally:
            self.conv.stride = stride
        c = y.shape[1]
        y = F.conv2d(F.pad(y, [1, 1, 1, 1], mode="replicate"),
                     self.kernel.expand(c, 1, 3, 3).contiguous(), groups=c)
        return y[:, :, ::2, ::2]


def anti_alias(module: nn.Module) -> int:
    """Replace every stride-2 SameConv2d below ``module`` by its BlurredStride; how many."""
    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SameConv2d) and child.stride == (2, 2):
                setattr(parent, name, BlurredStride(child))
                n += 1
    return n


def float_warp(y: np.ndarray, shift: float) -> np.ndarray:
    """Tensors (N, C, H, W) sampled at column j - ``shift`` (linear, the edge clamped)."""
    w = y.shape[-1]
    x = np.clip(np.arange(w) - shift, 0, w - 1)
    x0 = np.floor(x).astype(int)
    x1, t = np.minimum(x0 + 1, w - 1), x - x0
    return (1 - t) * y[..., x0] + t * y[..., x1]


def relative_error(target: np.ndarray, guess: np.ndarray) -> float:
    """Mean squared error of ``guess`` relative to the variance of ``target`` (per channel)."""
    var = ((target - target.mean((0, 2, 3), keepdims=True)) ** 2).mean()
    return float(((target - guess) ** 2).mean() / var)


def table(model, tables, point, images: np.ndarray, shifts: list[int], stride: int) -> None:
    """Print the symbol matches and float errors of each shift."""
    y0 = tca.split_tensors(model, tables, images)
    base = tca.symbols(point, y0)
    n, c, h, w = base.shape
    print("| shift (px) | shift (positions) | symbols equal to the co-located | to the warped "
          "| float error, unwarped | warped |")
    print("|---:|---:|---:|---:|---:|---:|")
    for dx in shifts:
        y = tca.split_tensors(model, tables, shifted(images, dx))
        moved = tca.symbols(point, y)
        # The content at position j came from j - dx/stride: sample the unshifted there.
        qy, qx = mc.grid(h, w, 0, 0)
        qx = qx - dx * mc.ONE // stride
        warped = np.stack([mc.warp(b, qy, qx) for b in base])
        inner = slice(-(-dx // stride) + 1, None)  # columns clear of the repeated border
        same = (moved == base)[..., inner].mean()
        comp = (moved == warped)[..., inner].mean()
        err = relative_error(y[..., inner], y0[..., inner])
        err_warped = relative_error(y[..., inner], float_warp(y0, dx / stride)[..., inner])
        print(f"| {dx} | {dx / stride:.3g} | {same:.3f} | {comp:.3f} | {err:.3f} | "
              f"{err_warped:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--op", type=int, default=3)
    ap.add_argument("--frames", type=int, default=30, help="every 5th test frame, this many")
    ap.add_argument("--shifts", default="2,4,8,12,16,24,32")
    ap.add_argument("--anti-alias", action="store_true",
                    help="also the anti-aliased edge (a proxy without fine-tuning)")
    ap.add_argument("--cache", type=Path, default=mc.ROOT / "data" / "rate_accuracy")
    args = ap.parse_args()
    try:
        shifts = [int(v) for v in args.shifts.split(",")]
    except ValueError:
        ap.error("--shifts must be integers, e.g. 2,4,8")
    if args.frames < 1 or any(not 0 < v < 1000 for v in shifts):
        ap.error("--frames must be >= 1 and every shift in 1..999")
    model, card = load_model_param(args.model)
    tables = tables_of(model.config.entropy)
    point = tables.points[args.op]
    wh = tuple(model.config.input_size)
    data = mc.sim_frames.cached(args.cache, "sequences", 23, 150, 50, (640, 480), wh, 0.0)
    images = data["images"][::5][:args.frames]
    c, h, w = tca.split_tensors(model, tables, images[:1]).shape[1:]
    stride = wh[0] // w
    print(f"model {card['name']} {card['fingerprint'][:16]}, op {args.op}, {len(images)} "
          f"frames, tensor {(c, h, w)}, stride {stride}")
    print("\nplain edge\n")
    table(model, tables, point, images, shifts, stride)
    if args.anti_alias:
        print(f"\nanti-aliased edge ({anti_alias(model.backbone)} strided convolutions, no "
              f"fine-tune)\n")
        table(model, tables, point, images, shifts, stride)
    print(f"\ndate {datetime.date.today()}")


if __name__ == "__main__":
    main()
