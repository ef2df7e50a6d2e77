"""Letterbox: fit an image into the network input keeping its aspect ratio.

``transform = (scale_x, scale_y, offset_x, offset_y)`` with model_px = source_px * scale +
offset (scale_x == scale_y). Padding is grey 0.5 (mid-range after normalisation is near 0).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PAD_VALUE = 0.5
# (scale_x, scale_y, offset_x, offset_y): model_px = source_px * scale + offset.
Transform = tuple[float, float, float, float]


def letterbox_params(source_wh: tuple[int, int], out_wh: tuple[int, int]
                     ) -> tuple[Transform, tuple[int, int]]:
    """(transform, resized (w, h)) for a source of size (W, H) into ``out_wh``."""
    sw, sh = source_wh
    ow, oh = out_wh
    if sw <= 0 or sh <= 0:
        raise ValueError(f"source size {sw}x{sh} is empty")
    scale = min(ow / sw, oh / sh)
    rw, rh = max(1, min(ow, round(sw * scale))), max(1, min(oh, round(sh * scale)))
    ox, oy = (ow - rw) // 2, (oh - rh) // 2
    return (rw / sw, rh / sh, float(ox), float(oy)), (rw, rh)


def letterbox_tensor(image: torch.Tensor, out_wh: tuple[int, int]
                     ) -> tuple[torch.Tensor, Transform]:
    """uint8 (H, W, 3) tensor on any device -> float (3, oh, ow) in [0, 1], transform."""
    h, w = image.shape[:2]
    transform, (rw, rh) = letterbox_params((w, h), out_wh)
    x = image.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    if (rw, rh) != (w, h):
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False,
                          antialias=rw < w)
    ow, oh = out_wh
    if (rw, rh) == (ow, oh):
        return x[0], transform
    out = torch.full((1, 3, oh, ow), PAD_VALUE, dtype=x.dtype, device=x.device)
    ox, oy = int(transform[2]), int(transform[3])
    out[:, :, oy:oy + rh, ox:ox + rw] = x
    return out[0], transform


def letterbox(image: np.ndarray, out_wh: tuple[int, int]
              ) -> tuple[np.ndarray, Transform]:
    """numpy version of ``letterbox_tensor`` (CPU)."""
    x, transform = letterbox_tensor(torch.from_numpy(np.ascontiguousarray(image)), out_wh)
    return x.numpy(), transform


def to_model(points: np.ndarray, transform: Transform) -> np.ndarray:
    """Source pixels (..., 2k) interleaved x, y -> model pixels."""
    sx, sy, ox, oy = transform
    p = np.array(points, dtype=np.float64, copy=True)
    p[..., 0::2] = p[..., 0::2] * sx + ox
    p[..., 1::2] = p[..., 1::2] * sy + oy
    return p


def to_source(points: np.ndarray, transform: Transform) -> np.ndarray:
    """Model pixels (..., 2k) interleaved x, y -> source pixels."""
    sx, sy, ox, oy = transform
    p = np.array(points, dtype=np.float64, copy=True)
    p[..., 0::2] = (p[..., 0::2] - ox) / sx
    p[..., 1::2] = (p[..., 1::2] - oy) / sy
    return p
