"""Are the split tensor's symbols shift-equivariant below the split's stride? Shift benchmark
frames by whole pixels (no parallax, no new content but the border), take eb-k's symbols of
the shifted image, and count how many equal (a) the unshifted frame's co-located symbols and
(b) the unshifted frame's symbols warped by the shift (the integer bilinear warp of
temporal_mc_analysis.py, the shift in 1/64 positions). If the features moved with the image,
(b) would match better than (a) at every sub-position shift.

    PYTHONPATH=. python bench/entropy/shift_equivariance.py --model models/default
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import temporal_context_analysis as tca  # noqa: E402
import temporal_mc_analysis as mc  # noqa: E402

from mtl_split_core.entropy_tables import tables_of  # noqa: E402
from mtl_split_core.runtime.model_files import load_model_param  # noqa: E402


def shifted(images: np.ndarray, dx: int) -> np.ndarray:
    """Images (N, H, W, 3) moved right by ``dx`` pixels, the left border repeated."""
    pad = np.repeat(images[:, :, :1], dx, axis=2)
    return np.concatenate([pad, images[:, :, :images.shape[2] - dx]], axis=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--op", type=int, default=3)
    ap.add_argument("--frames", type=int, default=30, help="every 5th test frame, this many")
    ap.add_argument("--shifts", default="2,4,8,12,16,24,32")
    ap.add_argument("--cache", type=Path, default=mc.ROOT / "data" / "rate_accuracy")
    args = ap.parse_args()
    model, card = load_model_param(args.model)
    tables = tables_of(model.config.entropy)
    point = tables.points[args.op]
    wh = tuple(model.config.input_size)
    data = mc.sim_frames.cached(args.cache, "sequences", 23, 150, 50, (640, 480), wh, 0.0)
    images = data["images"][::5][:args.frames]
    base = tca.symbols(point, tca.split_tensors(model, tables, images))
    n, c, h, w = base.shape
    stride = wh[0] // w
    print(f"model {card['name']} {card['fingerprint'][:16]}, op {args.op}, {n} frames, "
          f"tensor {(c, h, w)}, stride {stride}")
    print("| shift (px) | shift (positions) | symbols equal to the co-located | to the warped |")
    print("|---:|---:|---:|---:|")
    for dx in (int(s) for s in args.shifts.split(",")):
        moved = tca.symbols(point, tca.split_tensors(model, tables, shifted(images, dx)))
        # The content at position j came from j - dx/stride: sample the unshifted there.
        qy, qx = mc.grid(h, w, 0, 0)
        qx = qx - dx * mc.ONE // stride
        warped = np.stack([mc.warp(b, qy, qx) for b in base])
        inner = slice(-(-dx // stride) + 1, None)  # columns clear of the repeated border
        same = (moved == base)[..., inner].mean()
        comp = (moved == warped)[..., inner].mean()
        print(f"| {dx} | {dx / stride:.3g} | {same:.3f} | {comp:.3f} |")
    print(f"date {datetime.date.today()}")


if __name__ == "__main__":
    main()
