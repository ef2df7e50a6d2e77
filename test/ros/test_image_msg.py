"""rclpy and rosbags image messages in every colour encoding reach the decoder whole (row
padding, endianness, the uint8[] field's types); bad messages fail with their reason. The
pixel conversions themselves: test/core/test_image_decode.py."""

import numpy as np
import pytest

from mtl_split_core import image_decode as dec
from mtl_split_core.bags import typestore
from mtl_split_ros.image_msg import ImageDecodeError, fill_image, image_to_rgb
from mtl_split_ros.msg_factory import BagMessages, RclpyMessages
from support.camera_encodings import CONVERTED, compressed, encode, image_fields, smooth_rgb

RGB = smooth_rgb(12, 16)
FACTORIES = [RclpyMessages(), BagMessages(typestore())]
IDS = ["rclpy", "rosbags"]


def _image(factory, encoding, **options):
    fields = image_fields(encode(RGB, encoding), encoding, **options)
    fields["data"] = np.frombuffer(fields["data"], np.uint8)
    return factory.make("sensor_msgs/msg/Image", **fields), fields


@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
@pytest.mark.parametrize("encoding", CONVERTED)
def test_every_encoding_through_either_message_type(factory, encoding):
    msg, fields = _image(factory, encoding, pad=2, big_endian=encoding.endswith("16"))
    expected = dec.raw_to_rgb(encoding, fields["height"], fields["width"], fields["step"],
                              bool(fields["is_bigendian"]), fields["data"])
    out = image_to_rgb(msg)
    assert out.shape == RGB.shape and np.array_equal(out, expected)


def test_fill_image_round_trips():
    assert np.array_equal(image_to_rgb(fill_image(RclpyMessages().make(
        "sensor_msgs/msg/Image"), RGB, "rgb8")), RGB)


@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
@pytest.mark.parametrize("fmt", ["png", "", "rgb8; png compressed bgr8"])
def test_compressed_by_content(factory, fmt):
    msg = factory.make("sensor_msgs/msg/CompressedImage", format=fmt,
                       data=np.frombuffer(compressed(RGB, "png"), np.uint8))
    assert np.array_equal(image_to_rgb(msg), RGB)


@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
def test_bad_messages_name_their_cause(factory):
    msg, _ = _image(factory, "bayer_rggb8")
    msg.data = msg.data[:-1]
    with pytest.raises(ImageDecodeError) as info:
        image_to_rgb(msg)
    assert info.value.reason == dec.DATA_LENGTH and "needs 192 bytes; got 191" in str(info.value)
    depth = factory.make("sensor_msgs/msg/CompressedImage", format="16UC1; compressedDepth png",
                         data=np.frombuffer(bytes(12) + compressed(RGB, "png"), np.uint8))
    with pytest.raises(ImageDecodeError, match="compressedDepth image") as info:
        image_to_rgb(depth)
    assert info.value.reason == dec.COMPRESSED_DEPTH
