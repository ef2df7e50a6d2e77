"""Image codecs of split ``input`` (image upload): the model-input image <-> a file's bytes.

The model-input image is the letterboxed uint8 RGB frame at the card's input size, exactly the
pixels the network takes (``model_input_image``). Uploading it with a good image codec is the
baseline split computing has to beat, so it is one more option beside every split and codec
(docs/ADAPTIVE.md), carried by the same ``SplitFeatures`` message (docs/CONTRACTS.md).

Codec ids: ``"<format>-q<quality>/<version>"``, e.g. ``"webp-q80/1"``: ``format`` one of
``IMAGE_FORMATS`` (``webp``, ``jpeg``, ``avif`` where this Pillow build has it), ``quality``
1..100 (the encoder's quality; the decoder ignores it), version 1 = the format's own file
bytes, written by Pillow with its default settings (AVIF: speed 8, see ``_FORMATS``).
Each operating point is its own id, as the feature codecs' ``q4``/``q8`` are, so profiles,
accuracy results and the controller key options by (split, codec) alone.

``decode_image`` treats its input as hostile: the byte count, the magic bytes and the width,
height and layout the format's header declares are checked by this module's own parsers
before any decoder runs (Pillow's WebP decoder allocates its canvas when the file is opened),
so no more than the expected image is ever decoded. Every problem raises ``ImageCodecError``
with a ``reason`` (counted by the server as ``rejected_<reason>``).
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, features

from mtl_split_core.preprocess import Transform, letterbox_tensor

INPUT_SPLIT = "input"           # the split name of image upload
DEFAULT_IMAGE_CODEC = "webp-q80/1"
# What `mtl-split profile` measures by default: WebP around the default feature codec's
# accuracy (issue #23: q80 matches q4-zstd/1 on sim frames, q70 is 1-2% below, q90 near q8)
# and JPEG q90, what most cameras send.
PROFILED_IMAGE_CODECS = ("webp-q70/1", "webp-q80/1", "webp-q90/1", "jpeg-q90/1")
QUALITY_RANGE = (1, 100)
# An encoded image may exceed the raw pixels (noise at q100); beyond twice that it is not ours.
HEADROOM_BYTES = 64 * 1024

# Reasons (the server counts them as rejected_<reason>).
CODEC = "upload_codec"          # not an image codec id this build reads
BYTES = "upload_bytes"          # empty, or more bytes than the image can need
FORMAT = "upload_format"        # magic bytes / container of another format, or a variant
SIZE = "upload_size"            # header's width x height is not the model input's
LAYOUT = "upload_layout"        # not 3-channel 8-bit, progressive, animated, ...
CORRUPT = "upload_corrupt"      # the decoder failed (truncated, damaged)
REASONS = (CODEC, BYTES, FORMAT, SIZE, LAYOUT, CORRUPT)

_CODEC_ID = re.compile(r"([a-z]+)-q([0-9]{1,3})/([0-9]{1,6})")
VERSION = 1


class ImageCodecError(ValueError):
    """An image payload or codec id this module cannot handle; ``reason`` is one of
    ``REASONS``, the message says what was wrong and what was expected."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ------------------------------------------------------------------------------ headers
def _jpeg_header(data: bytes) -> tuple[int, int]:
    """(width, height) of a baseline/extended-sequential 3-component JPEG; walks the marker
    segments up to the frame header (progressive and arithmetic JPEGs are refused: a
    progressive file's scans multiply decoding work, and our encoder writes neither)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageCodecError(FORMAT, f"JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise ImageCodecError(CORRUPT, f"JPEG: segment length {length} at byte {pos}")
        if marker in (0xC0, 0xC1):
            if pos + 10 > len(data):
                break
            precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 4)
            if precision != 8 or components != 3:
                raise ImageCodecError(LAYOUT, f"JPEG: {components} components of {precision} "
                                      f"bits; expected 3 of 8 (RGB)")
            return width, height
        if 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise ImageCodecError(LAYOUT, f"JPEG: frame type 0x{marker:02X} (progressive, "
                                  f"lossless or arithmetic); expected baseline (0xC0/0xC1)")
        if marker == 0xDA:  # scan before any frame header
            break
        pos += 2 + length
    raise ImageCodecError(CORRUPT, "JPEG: no frame header (truncated?)")


def _webp_header(data: bytes) -> tuple[int, int]:
    """(width, height) of a simple-format WebP: one lossy ``VP8 `` or lossless ``VP8L``
    bitstream (the extended ``VP8X`` format, with animation, alpha or metadata, is refused:
    our encoder never writes it)."""
    if len(data) < 30:
        raise ImageCodecError(CORRUPT, f"WebP: {len(data)} bytes, shorter than its header")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if riff_size + 8 != len(data):
        raise ImageCodecError(CORRUPT, f"WebP: RIFF size {riff_size + 8} != {len(data)} bytes "
                              f"received (truncated or padded)")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ImageCodecError(CORRUPT, "WebP: VP8 frame without its start code")
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ImageCodecError(CORRUPT, "WebP: VP8L bitstream without its signature")
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise ImageCodecError(LAYOUT, f"WebP: chunk {chunk!r}; expected a simple-format "
                          f"'VP8 ' or 'VP8L' image (no animation, alpha or metadata)")


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """ISO BMFF boxes in data[start:end]: (type, payload start, payload end)."""
    out, pos = [], start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ImageCodecError(CORRUPT, f"AVIF: box {kind!r} of {size} bytes at {pos} "
                                  f"overruns its container (truncated?)")
        out.append((kind, pos + header, pos + size))
        pos += size
        if len(out) > 256:
            raise ImageCodecError(FORMAT, "AVIF: more than 256 boxes in one container")
    return out


def _child(data: bytes, boxes: list[tuple[bytes, int, int]], kind: bytes, skip: int = 0
           ) -> list[tuple[bytes, int, int]]:
    found = [b for b in boxes if b[0] == kind]
    if len(found) != 1:
        raise ImageCodecError(FORMAT, f"AVIF: {len(found)} {kind!r} boxes; expected one")
    return _boxes(data, found[0][1] + skip, found[0][2])


def _avif_header(data: bytes) -> tuple[int, int]:
    """(width, height) from the one ``ispe`` property of a still AVIF (meta/iprp/ipco)."""
    top = _boxes(data, 0, len(data))
    ipco = _child(data, _child(data, _child(data, top, b"meta", skip=4), b"iprp"), b"ipco")
    ispe = [b for b in ipco if b[0] == b"ispe"]
    if len(ispe) != 1 or ispe[0][2] - ispe[0][1] < 12:
        raise ImageCodecError(LAYOUT, f"AVIF: {len(ispe)} image size properties; expected "
                              f"one (a single image without alpha or grid)")
    width, height = struct.unpack_from(">II", data, ispe[0][1] + 4)
    return width, height


@dataclass(frozen=True)
class ImageFormat:
    pil_format: str
    header: Callable[[bytes], tuple[int, int]]  # (width, height), checked before decoding
    magic: Callable[[bytes], bool]
    options: dict

    def available(self) -> bool:
        return bool(features.check(self.pil_format.lower() if self.pil_format != "JPEG"
                                   else "jpg"))


_FORMATS: dict[str, ImageFormat] = {
    "webp": ImageFormat("WEBP", _webp_header,
                        lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", {}),
    "jpeg": ImageFormat("JPEG", _jpeg_header, lambda d: d[:3] == b"\xff\xd8\xff", {}),
    # libavif speed 8 (Pillow's default is 6): about 60 ms instead of 250 ms per 320x240 frame
    # on a 2-core CPU for ~4% more bytes (bench/rate_accuracy); a robot cannot wait longer.
    "avif": ImageFormat("AVIF", _avif_header,
                        lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"avif", b"mif1"),
                        {"speed": 8}),
}
IMAGE_FORMATS = tuple(_FORMATS)


# ------------------------------------------------------------------------------ codec ids
def parse_image_codec(codec: object) -> tuple[str, int]:
    """``"webp-q80/1"`` -> ``("webp", 80)``; ImageCodecError(CODEC) for anything else,
    including a format this Pillow build cannot encode or decode."""
    match = _CODEC_ID.fullmatch(codec) if isinstance(codec, str) else None
    if match is None:
        raise ImageCodecError(CODEC, f"image codec {str(codec)[:60]!r}: expected "
                              f"'<format>-q<quality>/{VERSION}' like {DEFAULT_IMAGE_CODEC}")
    name, quality, version = match.group(1), int(match.group(2)), int(match.group(3))
    if name not in _FORMATS:
        raise ImageCodecError(CODEC, f"image format {name!r}: expected one of "
                              f"{', '.join(IMAGE_FORMATS)}")
    lo, hi = QUALITY_RANGE
    if not lo <= quality <= hi or version != VERSION:
        raise ImageCodecError(CODEC, f"{codec}: expected quality {lo}..{hi} and version "
                              f"{VERSION}")
    if not _FORMATS[name].available():
        raise ImageCodecError(CODEC, f"{codec}: this Pillow build has no {name} codec")
    return name, quality


def is_image_codec(codec: object) -> bool:
    """Whether ``codec`` is an image codec id this build reads and writes."""
    try:
        parse_image_codec(codec)
    except ImageCodecError:
        return False
    return True


# ------------------------------------------------------------------------------ the image
def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float (3, H, W) in [0, 1] -> uint8 (H, W, 3), rounded to nearest (on x's device)."""
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)


def model_input_image(rgb: np.ndarray, input_size: tuple[int, int]
                      ) -> tuple[np.ndarray, Transform]:
    """The model-input image of an RGB uint8 (H, W, 3) frame: letterboxed to ``input_size``
    (W, H), uint8 (H', W', 3); and the letterbox transform."""
    x, transform = letterbox_tensor(torch.from_numpy(np.ascontiguousarray(rgb)), input_size)
    return to_uint8(x).contiguous().numpy(), transform


def max_image_bytes(size: tuple[int, int]) -> int:
    """The most bytes an image of ``size`` (W, H) may take on the wire."""
    return 2 * 3 * size[0] * size[1] + HEADROOM_BYTES


def encode_image(image: np.ndarray, codec: str = DEFAULT_IMAGE_CODEC) -> bytes:
    """uint8 (H, W, 3) RGB -> the file's bytes (everything a receiver needs)."""
    name, quality = parse_image_codec(codec)
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and min(image.shape) > 0):
        raise ImageCodecError(LAYOUT, f"expected a uint8 (H, W, 3) RGB array, got "
                              f"{getattr(image, 'dtype', type(image).__name__)} "
                              f"{getattr(image, 'shape', '')}")
    fmt = _FORMATS[name]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), "RGB").save(
        buf, format=fmt.pil_format, quality=quality, **fmt.options)
    return buf.getvalue()


def decode_image(data: bytes, codec: str, size: tuple[int, int]) -> np.ndarray:
    """The file's bytes -> uint8 (H, W, 3) RGB of exactly ``size`` (W, H).

    Checks, in order, before any decoding: the codec id, the byte count (1 ..
    ``max_image_bytes``), the format's magic bytes, the width, height and layout its header
    declares. Only ImageCodecError leaves this function.
    """
    name, _ = parse_image_codec(codec)
    fmt = _FORMATS[name]
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageCodecError(BYTES, f"payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    cap = max_image_bytes(size)
    if not 0 < len(data) <= cap:
        raise ImageCodecError(BYTES, f"{len(data)} bytes; expected 1..{cap} for a "
                              f"{size[0]}x{size[1]} image")
    if not fmt.magic(data):
        raise ImageCodecError(FORMAT, f"not {name} data (starts {data[:12]!r})")
    try:
        declared = fmt.header(data)
    except struct.error as err:  # a field read past the end
        raise ImageCodecError(CORRUPT, f"{name}: truncated header ({err})") from None
    if tuple(declared) != tuple(size):
        raise ImageCodecError(SIZE, f"{name} header declares {declared[0]}x{declared[1]}; "
                              f"expected the model input's {size[0]}x{size[1]}")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt.pil_format]) as img:
            if img.size != tuple(size) or getattr(img, "n_frames", 1) != 1 \
                    or img.mode != "RGB":
                raise ImageCodecError(LAYOUT, f"{name}: {img.size[0]}x{img.size[1]} "
                                      f"{img.mode}, {getattr(img, 'n_frames', 1)} frame(s); "
                                      f"expected one {size[0]}x{size[1]} RGB image")
            img.load()
            out = np.array(img)  # writable: callers may hand it to torch
    except ImageCodecError:
        raise
    except Exception as err:  # noqa: BLE001 - the contract: only ImageCodecError escapes
        raise ImageCodecError(CORRUPT, f"{name}: cannot decode ({type(err).__name__}: "
                              f"{str(err)[:120]})") from None
    if out.shape != (size[1], size[0], 3) or out.dtype != np.uint8:
        raise ImageCodecError(LAYOUT, f"{name} decoded to {out.dtype} {out.shape}; expected "
                              f"uint8 {(size[1], size[0], 3)}")
    return out


def round_trip(images: np.ndarray, codec: str) -> tuple[np.ndarray, list[int]]:
    """Model-input images (N, H, W, 3) uint8 through ``codec``: what the server decodes from
    each upload, and the bytes each took (the evaluation of split ``input``)."""
    size = (int(images.shape[2]), int(images.shape[1]))
    files = [encode_image(np.ascontiguousarray(image), codec) for image in images]
    return np.stack([decode_image(f, codec, size) for f in files]), [len(f) for f in files]
