"""Image codecs for the image-upload baseline: the model-input image (uint8 RGB at the
network's input size) -> bytes -> decoded image, through Pillow and its plugins.

Each codec runs at its library's default speed/effort settings (AVIF: a faster one, see
below), which is what a robot that uploads images would use; only the quality changes along a
curve. A codec whose encoder this build lacks (Pillow without AVIF, no pillow-jxl-plugin) is
reported as unavailable, not faked.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, features


def _jxl_available() -> bool:
    try:
        import pillow_jxl  # noqa: F401  (registers the JPEG XL format with Pillow)
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class ImageCodec:
    name: str
    pil_format: str
    qualities: tuple[int, ...]  # the default sweep, cheapest first
    options: dict
    available: Callable[[], bool]
    lossless: bool = False

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        """uint8 (H, W, 3) RGB -> the file's bytes (everything a receiver needs)."""
        buf = io.BytesIO()
        kwargs = dict(self.options)
        if quality is not None:
            kwargs["quality"] = int(quality)
        Image.fromarray(image, "RGB").save(buf, format=self.pil_format, **kwargs)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))


# Denser at the top, where the codecs come within 0.005 of the float network.
QUALITIES = (10, 25, 40, 50, 60, 70, 80, 90)
IMAGE_CODECS: dict[str, ImageCodec] = {c.name: c for c in (
    ImageCodec("jpeg", "JPEG", QUALITIES, {}, lambda: features.check("jpg")),
    ImageCodec("webp", "WEBP", QUALITIES, {}, lambda: features.check("webp")),
    # libavif speed 8 (Pillow's default is 6): about 60 ms instead of 250 ms per 320x240 frame
    # here for ~4% more bytes; a robot streaming at 30 fps cannot afford the slower setting.
    ImageCodec("avif", "AVIF", QUALITIES, {"speed": 8}, lambda: features.check("avif")),
    ImageCodec("jxl", "JXL", QUALITIES, {}, _jxl_available),
)}
# Lossless references: their accuracy is the float network's, only the bytes are measured.
LOSSLESS: dict[str, ImageCodec] = {c.name: c for c in (
    ImageCodec("png", "PNG", (), {"optimize": True}, lambda: True, lossless=True),
    ImageCodec("webp-lossless", "WEBP", (), {"lossless": True}, lambda: features.check("webp"),
               lossless=True),
)}


def available_codecs(names: list[str] | None = None) -> dict[str, ImageCodec]:
    """The lossy codecs (all or ``names``) this build can encode."""
    chosen = IMAGE_CODECS if names is None else {n: IMAGE_CODECS[n] for n in names}
    return {n: c for n, c in chosen.items() if c.available()}
