"""Image messages in every supported encoding become the same RGB array; bad ones fail clearly."""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from mtl_split_ros.image_msg import ImageDecodeError, fill_image, image_to_rgb

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def _image(pixels, encoding, pad=0):
    msg = fill_image(Image(), pixels, encoding)
    if pad:
        rows = np.ascontiguousarray(pixels).reshape(pixels.shape[0], -1)
        padded = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
        padded[:, : rows.shape[1]] = rows.view(np.uint8)
        msg.step = padded.shape[1]
        msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("encoding, pixels", [
    ("rgb8", RGB), ("bgr8", RGB[..., ::-1]),
    ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])),
    ("bgra8", np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)])),
])
def test_colour_encodings_give_rgb(encoding, pixels):
    assert np.array_equal(image_to_rgb(_image(pixels, encoding)), RGB)
    assert np.array_equal(image_to_rgb(_image(pixels, encoding, pad=3)), RGB)


def test_mono_encodings_become_grey_rgb():
    grey = RGB[..., 0]
    out = image_to_rgb(_image(grey, "mono8"))
    assert out.shape == (6, 5, 3) and np.array_equal(out[..., 1], grey)
    out16 = image_to_rgb(_image(grey.astype(np.uint16) * 257, "mono16"))
    assert np.array_equal(out16[..., 2], grey)


@pytest.mark.parametrize("fmt, ext", [("jpeg", ".jpg"), ("png", ".png"),
                                      ("rgb8; png compressed bgr8", ".png")])
def test_compressed(fmt, ext):
    ok, buf = cv2.imencode(ext, RGB[..., ::-1])
    msg = CompressedImage(format=fmt, data=buf.tobytes())
    out = image_to_rgb(msg)
    assert out.shape == RGB.shape
    if ext == ".png":
        assert np.array_equal(out, RGB)


def test_bad_images_raise_one_clear_error():
    with pytest.raises(ImageDecodeError, match="unsupported encoding '32FC1'"):
        image_to_rgb(_image(np.zeros((2, 2), np.float32), "32FC1"))
    with pytest.raises(ImageDecodeError, match="empty"):
        image_to_rgb(Image(encoding="rgb8", height=0, width=0, step=0))
    short = _image(RGB, "rgb8")
    short.data = bytes(10)
    with pytest.raises(ImageDecodeError, match="needs step"):
        image_to_rgb(short)
    with pytest.raises(ImageDecodeError, match="corrupt"):
        image_to_rgb(CompressedImage(format="jpeg", data=b"\xff\xd8garbage"))
    with pytest.raises(ImageDecodeError, match="format"):
        image_to_rgb(CompressedImage(format="tiff", data=b"xx"))
