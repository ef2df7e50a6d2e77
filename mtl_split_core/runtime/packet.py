"""What the edge sends the server for one frame, and the bounds every incoming field must meet.

The bounds (docs/CONTRACTS.md, "Input bounds") are checked before a field is used, each
violation a ``PacketRejected(reason, message)``. The tensor fields (codec, shape, scale, offset,
data) are checked by the codec when the server decodes them (``ServerRunner.admit``) and the
shape against the model by ``ServerRunner.check``; this module holds everything else.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mtl_split_core.codec import EncodedTensor

# ------------------------------------------------------------------------------ the bounds
# Strings copied from the input (header.frame_id, model_id, model_fingerprint, codec, ...).
MAX_TEXT_BYTES = 256
# Image sides in pixels (source_width/height; camera_info width/height, binning and roi).
MAX_IMAGE_SIDE = 16384
# transform scales: any letterbox of a source <= MAX_IMAGE_SIDE into an input <= MAX_IMAGE_SIDE.
TRANSFORM_SCALE_RANGE = (1.0 / MAX_IMAGE_SIDE, float(MAX_IMAGE_SIDE))
# camera_info K: fx, fy in pixels (a 1-px focal length is already a > 90 deg view of 2 px).
FOCAL_PX_RANGE = (1.0, 1e6)
# camera_info K, R, P, D: every value's magnitude (principal points, projection terms).
MAX_CAMERA_VALUE = 1e6
# camera_info D: at most this many distortion coefficients (OpenCV's largest model has 14).
MAX_DISTORTION_COEFFS = 16
# edge_ms: finite, in [0, an hour].
EDGE_MS_RANGE = (0.0, 3.6e6)
# send_fps (the edge's announced frame rate, 0 = unknown): finite, in [0, 1000] frames/s (no
# camera a robot streams from is faster; the pool's admission bounds what it counts further).
SEND_FPS_RANGE = (0.0, 1000.0)
# shape: more entries than any tensor has are rejected before they are copied (codec: exactly 3).
MAX_SHAPE_DIMS = 8
# header.stamp.nanosec must be a fraction of a second.
NANOSEC_PER_SEC = 1_000_000_000
# split_index of split "input" (image upload, mtl_split_core/image_codec.py): the packet
# carries the model-input image, shape (3, H, W) of the card's input size, an image codec id,
# no scale/offset, the image file as data. No model has 255 split points.
INPUT_SPLIT_INDEX = 255


class PacketRejected(ValueError):
    """A packet this server cannot serve; ``reason`` is a short key for counting."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FeaturePacket:
    tensor: EncodedTensor                       # the encoded split tensor
    model_id: str                               # model card name
    model_fingerprint: str                      # weights + split config hash
    split_index: int                            # index into the card's split points
    source_size: tuple[int, int]                # (width, height) of the camera image
    transform: tuple[float, float, float, float]  # model_px = source_px * scale + offset
    edge_ms: float = 0.0                        # edge preprocess + prefix + encode time

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor on the wire: payload + per-channel scale/offset."""
        return self.tensor.nbytes


# ------------------------------------------------------------------------------ checks
def check_text(reason: str, field: str, value: object) -> None:
    """``value`` is a string of at most MAX_TEXT_BYTES UTF-8 bytes."""
    if not isinstance(value, str):
        raise PacketRejected(reason, f"{field} is a {type(value).__name__}; expected a string")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise PacketRejected(reason, f"{field} has {size} bytes; expected at most "
                             f"{MAX_TEXT_BYTES}")


def check_int(reason: str, field: str, value: object, lo: int, hi: int) -> None:
    """``value`` is an integer in ``lo..hi``."""
    if type(value) is int and lo <= value <= hi:  # the common case, without the ABC check
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not lo <= int(value) <= hi:
        raise PacketRejected(reason, f"{field} = {short_repr(value)}; expected an integer in "
                             f"{lo}..{hi}")


def check_stamp(sec: int, nanosec: int) -> None:
    """header.stamp: nanosec below one second (sec is any int32)."""
    check_int("stamp", "header.stamp.nanosec", nanosec, 0, NANOSEC_PER_SEC - 1)
    check_int("stamp", "header.stamp.sec", sec, -2**31, 2**31 - 1)


def check_packet(packet: FeaturePacket) -> None:
    """The packet's own fields (not the tensor, not the model match) are within bounds."""
    check_text("model_id", "model_id", packet.model_id)
    check_text("fingerprint", "model_fingerprint", packet.model_fingerprint)
    check_text("codec", "codec", packet.tensor.codec)
    w, h = packet.source_size
    check_int("source_size", "source_width", w, 1, MAX_IMAGE_SIDE)
    check_int("source_size", "source_height", h, 1, MAX_IMAGE_SIDE)
    t = tuple(packet.transform)
    lo, hi = TRANSFORM_SCALE_RANGE
    if len(t) != 4 or not all(_is_number(v) and math.isfinite(v) for v in t):
        raise PacketRejected("transform", f"transform {short_repr(t)}: expected 4 finite values "
                             f"(scale_x, scale_y, offset_x, offset_y)")
    if not (lo <= t[0] <= hi and lo <= t[1] <= hi):
        raise PacketRejected("transform", f"transform scales ({t[0]:g}, {t[1]:g}): expected "
                             f"both in [{lo:g}, {hi:g}]")
    lo, hi = EDGE_MS_RANGE
    if not (_is_number(packet.edge_ms) and lo <= packet.edge_ms <= hi):
        raise PacketRejected("edge_ms", f"edge_ms = {short_repr(packet.edge_ms)}; expected a "
                             f"finite number in [{lo:g}, {hi:g}]")


def check_send_fps(value: object) -> float:
    """SplitFeatures.send_fps within SEND_FPS_RANGE (rejected, not clamped), as a float."""
    lo, hi = SEND_FPS_RANGE
    if isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and lo <= float(value) <= hi:
        return float(value)
    raise PacketRejected("send_fps", f"send_fps = {short_repr(value)}; expected a finite "
                         f"number in [{lo:g}, {hi:g}] frames/s (0 = unknown)")


def content_box(packet: FeaturePacket, input_size: tuple[int, int]
                ) -> tuple[int, int, int, int]:
    """The source image inside the network input, in model pixels: (x0, y0, x1, y1), clipped
    to the input; PacketRejected when it does not overlap the input. ``packet`` must have
    passed ``check_packet``."""
    sx, sy, ox, oy = packet.transform
    src_w, src_h = packet.source_size
    in_w, in_h = input_size
    x0, y0 = max(0, int(round(ox))), max(0, int(round(oy)))
    x1 = min(in_w, int(round(ox)) + max(1, int(round(src_w * sx))))
    y1 = min(in_h, int(round(oy)) + max(1, int(round(src_h * sy))))
    if x1 <= x0 or y1 <= y0:
        raise PacketRejected(
            "transform", f"transform {tuple(packet.transform)} maps the {src_w}x{src_h} source "
            f"outside the {in_w}x{in_h} network input; expected the mapped source rectangle to "
            f"overlap it")
    return x0, y0, x1, y1


def check_camera_info(k: ArrayLike, width: int, height: int, d: ArrayLike = (),
                      r: ArrayLike | None = None, p: ArrayLike | None = None) -> None:
    """camera_info: K all zero (unknown camera) or fx, fy in FOCAL_PX_RANGE; every K, D, R, P
    value finite and within MAX_CAMERA_VALUE; width/height 0 (unknown) .. MAX_IMAGE_SIDE.
    The arrays are checked whole (numpy): this runs for every frame the server takes."""
    check_int("camera_info", "camera_info.width", width, 0, MAX_IMAGE_SIDE)
    check_int("camera_info", "camera_info.height", height, 0, MAX_IMAGE_SIDE)
    d = np.asarray(d, np.float64).ravel()
    if d.size > MAX_DISTORTION_COEFFS:
        raise PacketRejected("camera_info", f"camera_info.d has {d.size} values; expected at "
                             f"most {MAX_DISTORTION_COEFFS}")
    fields = [(name, np.asarray(values, np.float64).ravel(), size)
              for name, values, size in (("k", k, 9), ("d", d, None), ("r", r, 9), ("p", p, 12))
              if values is not None]  # None: not given
    for name, values, size in fields:
        if size is not None and values.size != size:
            raise PacketRejected("camera_info", f"camera_info.{name} has {values.size} "
                                 f"values; expected {size}")
    if not (np.abs(np.concatenate([v for _, v, _ in fields])) <= MAX_CAMERA_VALUE).all():
        name, values, _ = next(f for f in fields  # NaN compares False: out of bounds too
                               if not (np.abs(f[1]) <= MAX_CAMERA_VALUE).all())
        raise PacketRejected("camera_info", f"camera_info.{name} "
                             f"{short_repr(values.tolist())}: expected finite values "
                             f"within +-{MAX_CAMERA_VALUE:g}")
    k = fields[0][1]
    if k.any():
        lo, hi = FOCAL_PX_RANGE
        fx, fy = float(k[0]), float(k[4])
        if not (lo <= fx <= hi and lo <= fy <= hi):
            raise PacketRejected("camera_info", f"camera_info.k focal lengths fx={fx:g}, "
                                 f"fy={fy:g}: expected both in [{lo:g}, {hi:g}] px, or K all "
                                 f"zero (unknown camera)")


def _is_number(value: object) -> bool:
    return type(value) is float or (isinstance(value, numbers.Real)
                                    and not isinstance(value, bool))


def short_repr(value: object, limit: int = 80) -> str:
    """repr() clipped so hostile input cannot flood logs."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
