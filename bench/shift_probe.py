"""How well the split tensor follows a small camera motion (issue #23, streams): the input is
moved by k pixels (k < the split's stride) and the new tensor is predicted from the unmoved
one, (a) as it is (what the temporal codecs' co-located reference does) and (b) moved by k /
stride positions with linear interpolation (a motion-compensated reference). Errors are mean
squared, relative to the moved tensor's variance; inner columns only (the borders see new
content). With ``--blur`` the same edge is measured again with every stride-2 convolution of
the backbone anti-aliased (stride 1, then a [1 2 1]^2 / 16 blur, then every other position;
Zhang 2019), *without* fine-tuning: a proxy for what an anti-aliased edge could give the
temporal codecs, not a model (its accuracy is not measured and would need training).

    python bench/shift_probe.py --model models/default \\
        --sequences data/rate_accuracy/v2_sequences_seed23_n150_g50_640x480_320x240_noise0.npz \\
        --blur --out bench/results/shift_probe.md
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from entropy_codec_bench import run_header, write_report  # noqa: E402

from mtl_split_core.backbones.efficientnet_lite import SameConv2d  # noqa: E402
from mtl_split_core.runtime.model_files import load_model_param  # noqa: E402


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


def blur_strided(module: nn.Module) -> int:
    """Replace every stride-2 SameConv2d below ``module`` by its BlurredStride; how many."""
    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SameConv2d) and child.stride == (2, 2):
                setattr(parent, name, BlurredStride(child))
                n += 1
    return n


def shift_errors(model: nn.Module, split: str, stride: int, images: torch.Tensor,
                 shifts: list[int]) -> dict[int, tuple[float, float]]:
    """Per shift k (px): mean over images of (no-warp, warped) relative squared error."""
    h, w = images.shape[-2:]
    crop_h, crop_w = h - 2 * stride, w - 2 * stride  # room to move by up to one stride
    out: dict[int, list[tuple[float, float]]] = {k: [] for k in shifts}
    with torch.inference_mode():
        for x in images:
            base = model.edge(x[None, :, stride:stride + crop_h, :crop_w], split)[0]
            for k in shifts:
                f = model.edge(x[None, :, stride:stride + crop_h, k:k + crop_w], split)[0]
                t = k / stride  # f(p) ~ base(p + t): between base's columns p and p + 1
                target, same = f[:, :, 1:-2], base[:, :, 1:-2]
                warped = (1 - t) * same + t * base[:, :, 2:-1]
                var = ((target - target.mean((1, 2), keepdim=True)) ** 2).mean()
                out[k].append((float(((target - same) ** 2).mean() / var),
                               float(((target - warped) ** 2).mean() / var)))
    return {k: tuple(np.mean(v, 0)) for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--sequences", required=True, help="a sequences npz (its images are used)")
    ap.add_argument("--frames", type=int, default=6, help="frames, spread over the file")
    ap.add_argument("--blur", action="store_true", help="also the anti-aliased edge (proxy)")
    ap.add_argument("--out", default="bench/results/shift_probe.md")
    args = ap.parse_args()
    if args.frames < 1:
        ap.error("--frames must be >= 1")
    load = os.getloadavg()[0]
    torch.set_num_threads(2)
    model, card = load_model_param(args.model)
    model.eval()
    cfg = model.config
    split = cfg.default_split
    stride = next(p["stride"] for p in card["split_points"] if p["name"] == split)
    raw = np.load(args.sequences)["images"]
    pick = np.linspace(0, len(raw) - 1, args.frames).round().astype(int)
    images = torch.from_numpy(raw[pick]).permute(0, 3, 1, 2).float() / 255
    shifts = list(range(2, stride + 1, 2))
    rows = {"plain edge": shift_errors(model, split, stride, images, shifts)}
    if args.blur:
        n = blur_strided(model.backbone)
        rows[f"anti-aliased edge ({n} strided convs, no fine-tune)"] = shift_errors(
            model, split, stride, images, shifts)
    lines = [*run_header(load),
             f"Model: {card['name']}, fingerprint `{card['fingerprint']}`; split {split} "
             f"(stride {stride}); {len(images)} frames of {Path(args.sequences).name}",
             "", "Relative squared error of predicting the moved tensor from the unmoved one "
             "(no warp / warped by k / stride positions):", "",
             "| edge | " + " | ".join(f"{k} px" for k in shifts) + " |",
             "|---|" + "---:|" * len(shifts)]
    for name, errs in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{errs[k][0]:.3f} / {errs[k][1]:.3f}"
                                                 for k in shifts) + " |")
    return write_report(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
