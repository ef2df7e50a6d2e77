"""image_cdr: the serialized Image is the message outputs.image builds (deserialized back field
by field; the same length as rclpy's serialization, which differs only in its uninitialised
padding bytes), for every encoding the outputs use, odd sizes and frame ids of every
alignment."""

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from mtl_split_core.image_decode import ImageDecodeError
from mtl_split_ros.image_cdr import IMAGE_CDR, MAX_ENCODING_BYTES, RawImage, image_cdr, read_image
from mtl_split_ros.image_msg import image_to_rgb
from mtl_split_ros.msg_factory import RclpyMessages
from mtl_split_ros.outputs import image

MESSAGES = RclpyMessages()


@pytest.mark.parametrize("shape, dtype, encoding, frame_id", [
    ((96, 128), np.uint8, "mono8", ""),
    ((97, 131), np.float32, "32FC1", "a"),
    ((5, 7, 3), np.uint8, "rgb8", "ab"),
    ((240, 320), np.float32, "32FC1", "camera_optical_frame"),
    ((1, 1), np.uint8, "mono8", "r7/cam"),
    ((0, 4), np.uint8, "mono8", "abc"),
])
def test_the_bytes_are_the_message(shape, dtype, encoding, frame_id):
    rng = np.random.default_rng(len(frame_id))
    header = Header(stamp=Time(sec=int(rng.integers(0, 2**31)),
                               nanosec=int(rng.integers(0, 10**9))), frame_id=frame_id)
    pixels = (rng.uniform(0, 255, shape)).astype(dtype)
    want = image(MESSAGES, header, pixels, encoding)
    got = image_cdr(header, pixels, encoding)
    assert len(got) == len(serialize_message(want))
    assert deserialize_message(got, Image) == want


def test_a_strided_view_is_written_as_its_pixels():
    """A non-contiguous array (a crop, every other column) gives the pixels it shows."""
    pixels = np.arange(12 * 10, dtype=np.float32).reshape(12, 10)[2:9, ::2]
    header = Header(frame_id="cam")
    back = deserialize_message(image_cdr(header, pixels, "32FC1"), Image)
    assert (back.height, back.width, back.step) == (7, 5, 20)
    assert np.array_equal(np.frombuffer(bytes(back.data), np.float32).reshape(7, 5), pixels)


def _camera_image(shape=(6, 5, 3), encoding="rgb8", frame_id="cam", step_pad=0) -> Image:
    rng = np.random.default_rng(shape[0])
    pixels = rng.integers(0, 255, shape).astype(np.uint8)
    msg = image(MESSAGES, Header(stamp=Time(sec=12, nanosec=345), frame_id=frame_id), pixels,
                encoding)
    if step_pad:  # rows padded to a larger step, as some camera drivers send them
        rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(shape[0], -1)
        padded = np.concatenate([rows, np.full((shape[0], step_pad), 7, np.uint8)], 1)
        msg.step += step_pad
        msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("shape, encoding, frame_id, step_pad", [
    ((6, 5, 3), "rgb8", "cam", 0),
    ((7, 3), "mono8", "", 0),
    ((4, 6, 3), "bgr8", "abc", 3),
    ((480, 640, 3), "rgb8", "camera_optical_frame", 0),
    ((2, 2, 4), "rgba8", "x" * 300, 1),
    ((0, 0), "mono8", "a", 0),
])
def test_read_image_gives_rclpys_fields_and_the_same_rgb(shape, encoding, frame_id, step_pad):
    msg = _camera_image(shape, encoding, frame_id, step_pad)
    got = read_image(serialize_message(msg))
    assert isinstance(got, RawImage)
    assert got.header == msg.header
    assert (got.height, got.width, got.encoding, got.is_bigendian, got.step) == (
        msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step)
    assert got.data.tobytes() == bytes(msg.data)
    if msg.height:
        assert np.array_equal(image_to_rgb(got), image_to_rgb(msg))


def test_every_truncation_and_corruption_is_one_reason_never_another_error():
    """Cut anywhere, or any byte of the fields before the pixels changed: an Image that rclpy
    reads too (then with the same fields), or ImageDecodeError(IMAGE_CDR)."""
    raw = serialize_message(_camera_image((3, 4, 3), "rgb8", "camera"))
    for cut in range(len(raw)):
        if cut >= 4:  # shorter: no encapsulation, rclpy's deserialization decides
            with pytest.raises(ImageDecodeError) as err:
                read_image(raw[:cut])
            assert err.value.reason == IMAGE_CDR
    header_end = len(raw) - 3 * 4 * 3
    for at in range(4, header_end):
        for value in (0x00, 0x7F, 0xFF):
            bad = bytearray(raw)
            bad[at] = value
            try:
                got = read_image(bytes(bad))
            except ImageDecodeError as err:
                assert err.reason == IMAGE_CDR
                continue
            want = deserialize_message(bytes(bad), Image)
            assert (got.height, got.width, got.encoding, got.step, got.header) == (
                want.height, want.width, want.encoding, want.step, want.header)


def test_bytes_that_are_no_image_are_rejected_with_the_reason():
    for raw in (b"", b"\x00", b"\x00\x01\x00\x00", b"\x00\x01\x00\x00" + b"\xff" * 40,
                b"\x01\x02\x03\x04" * 8):
        with pytest.raises(ImageDecodeError) as err:
            read_image(raw)
        assert err.value.reason == IMAGE_CDR
    huge = bytearray(serialize_message(_camera_image((2, 2, 3))))
    encoding_at = bytes(huge).index(b"rgb8") - 4
    huge[encoding_at:encoding_at + 4] = (MAX_ENCODING_BYTES + 10).to_bytes(4, "little")
    with pytest.raises(ImageDecodeError):
        read_image(bytes(huge) + b"\x00" * 100)


def test_big_endian_bytes_go_through_rclpy():
    """Another encapsulation than little-endian CDR: rclpy reads it (the same message)."""
    msg = _camera_image((2, 3, 3))
    raw = bytearray(serialize_message(msg))
    raw[1] = 0x00  # claims big endian: rclpy reads the numbers the other way round
    try:
        want = deserialize_message(bytes(raw), Image)
    except Exception:  # noqa: BLE001 - then read_image must reject it with its reason
        with pytest.raises(ImageDecodeError):
            read_image(bytes(raw))
    else:
        assert read_image(bytes(raw)) == want
