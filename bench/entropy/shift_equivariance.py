"""Are the split tensor's symbols shift-equivariant below the split's stride? Shift benchmark
frames by whole pixels (no parallax, no new content but the border), take eb-k's symbols of
the shifted image, and count how many equal (a) the unshifted frame's co-located symbols and
(b) the unshifted frame's symbols warped by the shift (the integer bilinear warp of
temporal_mc_analysis.py, the shift in 1/64 positions). If the features moved with the image,
(b) would match better than (a) at every sub-position shift. The same for the float tensors
before quantization: the mean squared error of (a) and of (b) (a float bilinear warp),
relative to the shifted tensor's variance.

``--anti-alias``: then again with the same weights in the anti-aliased backbone
(``efficientnet_lite0_aa``: every stride-2 convolution run at stride 1, blurred by [1 2 1]^2 /
16, every other position kept; Zhang 2019) *without* training: a proxy for what an
anti-aliased edge could give the temporal codecs, not a model (its accuracy is not measured;
the card's quantizer meets a shifted distribution).

    PYTHONPATH=. python bench/entropy/shift_equivariance.py --model models/default --anti-alias
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import temporal_context_analysis as tca  # noqa: E402
import temporal_mc_analysis as mc  # noqa: E402

from mtl_split_core.entropy_tables import tables_of  # noqa: E402
from mtl_split_core.model.network import MultiTaskSplitNet  # noqa: E402
from mtl_split_core.runtime.model_files import load_model_param  # noqa: E402


def shifted(images: np.ndarray, dx: int) -> np.ndarray:
    """Images (N, H, W, 3) moved right by ``dx`` pixels, the left border repeated."""
    pad = np.repeat(images[:, :, :1], dx, axis=2)
    return np.concatenate([pad, images[:, :, :images.shape[2] - dx]], axis=2)


def anti_aliased(model: MultiTaskSplitNet) -> MultiTaskSplitNet:
    """The same weights in the network with the anti-aliased backbone (``efficientnet_lite0``
    -> ``efficientnet_lite0_aa``: the state dicts have the same keys), untrained with it."""
    config = dataclasses.replace(model.config, backbone=model.config.backbone + "_aa")
    twin = MultiTaskSplitNet(config)
    twin.load_state_dict(model.state_dict(), strict=True)
    return twin.eval()


def float_warp(y: np.ndarray, shift: float) -> np.ndarray:
    """Tensors (N, C, H, W) sampled at column j - ``shift`` (linear, the edge clamped)."""
    w = y.shape[-1]
    x = np.clip(np.arange(w) - shift, 0, w - 1)
    x0 = np.floor(x).astype(int)
    x1, t = np.minimum(x0 + 1, w - 1), x - x0
    return (1 - t) * y[..., x0] + t * y[..., x1]


def relative_error(target: np.ndarray, guess: np.ndarray) -> float:
    """Mean squared error of ``guess`` relative to ``target``'s variance about its channels'
    means."""
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
    if args.anti_alias and model.config.backbone != "efficientnet_lite0":
        ap.error(f"--anti-alias: needs an efficientnet_lite0 model, not {model.config.backbone}")
    tables = tables_of(model.config.entropy)
    if tables is None or not 0 <= args.op < len(tables.points):
        ap.error(f"--model {args.model}: no entropy tables with an operating point {args.op} "
                 f"(mtl-split train-eb fits them)")
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
        print("\nanti-aliased edge (efficientnet_lite0_aa, the same weights, not trained "
              "with it)\n")
        table(anti_aliased(model), tables, point, images, shifts, stride)
    print(f"\ndate {datetime.date.today()}")


if __name__ == "__main__":
    main()
