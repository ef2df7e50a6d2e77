"""FeaturePacket <-> mtl_split/msg/SplitFeatures: the only place that knows the message fields."""

from __future__ import annotations

import array
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from mtl_split.msg import SplitFeatures
from mtl_split_core.codec import EncodedTensor
from mtl_split_core.runtime.packet import (
    MAX_IMAGE_SIDE,
    MAX_SHAPE_DIMS,
    SEND_FPS_RANGE,
    FeaturePacket,
    PacketRejected,
    check_camera_info,
    check_int,
    check_send_fps,
    check_stamp,
    check_text,
)
from mtl_split_ros.features_cdr import read_features


def packet_to_msg(packet: FeaturePacket, header: Header | None = None,
                  camera_info: CameraInfo | None = None, probe: bool = False,
                  send_fps: float = 0.0) -> SplitFeatures:
    """A SplitFeatures message for ``packet`` with the source image's header/camera_info;
    ``probe``: a link probe (the server answers it and publishes no outputs); ``send_fps``:
    the edge's measured frame rate (0 = unknown; clipped to the field's bound)."""
    msg = SplitFeatures()
    if header is not None:
        msg.header = header
    if camera_info is not None:
        msg.camera_info = camera_info
    msg.model_id = packet.model_id
    msg.model_fingerprint = packet.model_fingerprint
    msg.split_index = int(packet.split_index)
    msg.source_width, msg.source_height = (int(v) for v in packet.source_size)
    msg.transform = np.asarray(packet.transform, dtype=np.float32)
    t = packet.tensor
    msg.codec = t.codec
    msg.shape = array.array("I", [int(v) for v in t.shape])
    msg.scale = array.array("f", np.asarray(t.scale, np.float32).tobytes())
    msg.offset = array.array("f", np.asarray(t.offset, np.float32).tobytes())
    data = array.array("B")
    data.frombytes(t.data)  # array.array, not bytes: rclpy checks bytes per element
    msg.data = data
    msg.edge_ms = float(packet.edge_ms)
    msg.probe = bool(probe)
    msg.send_fps = min(float(send_fps), SEND_FPS_RANGE[1]) if send_fps > 0 else 0.0
    return msg


# camera_info sections (``features_cdr.Features.camera_info_cdr``) that passed the checks: a
# robot's camera_info is the same in every message, so it is checked once, not per frame.
_CHECKED_CAMERAS: set[tuple[int, bytes]] = set()
MAX_CHECKED_CAMERAS = 1024


def msg_to_packet(msg: Any) -> FeaturePacket:
    """The packet carried by a SplitFeatures message (rclpy or rosbags-deserialized).

    The message-only fields (header, camera_info, the shape's length) are checked against the
    input bounds (runtime/packet.py) here, before they are used; the packet's own fields, the
    model match and the tensor once, by ``ServerRunner.admit`` (``check_packet`` for callers
    without a server). Raises PacketRejected.
    """
    check_text("frame_id", "header.frame_id", msg.header.frame_id)
    check_stamp(msg.header.stamp.sec, msg.header.stamp.nanosec)
    cdr = getattr(msg, "camera_info_cdr", None)  # read from bytes: remembered once checked
    if cdr is None or cdr not in _CHECKED_CAMERAS:
        check_camera_info_msg(msg.camera_info)
        if cdr is not None:
            if len(_CHECKED_CAMERAS) >= MAX_CHECKED_CAMERAS:  # bounded: hostile variety
                _CHECKED_CAMERAS.clear()                     # costs only the checks again
            _CHECKED_CAMERAS.add(cdr)
    send_fps_of(msg)
    shape = np.asarray(msg.shape).ravel()
    if shape.size > MAX_SHAPE_DIMS:  # any length != 3 is rejected later; do not copy a huge one
        raise PacketRejected("shape", f"shape has {shape.size} dimensions; expected 3 "
                             f"(C, H, W)")
    packet = FeaturePacket(
        tensor=EncodedTensor(
            codec=str(msg.codec),
            shape=tuple(int(v) for v in shape),
            scale=np.frombuffer(np.asarray(msg.scale, np.float32).tobytes(), np.float32),
            offset=np.frombuffer(np.asarray(msg.offset, np.float32).tobytes(), np.float32),
            data=np.asarray(msg.data, dtype=np.uint8).tobytes()),
        model_id=str(msg.model_id), model_fingerprint=str(msg.model_fingerprint),
        split_index=int(msg.split_index),
        source_size=(int(msg.source_width), int(msg.source_height)),
        transform=tuple(_floats(msg.transform).tolist()),  # length: checked by check_packet
        edge_ms=float(msg.edge_ms))
    return packet


def check_camera_info_msg(info: Any) -> None:
    """A SplitFeatures' camera_info within the input bounds (PacketRejected)."""
    check_text("camera_info", "camera_info.header.frame_id", info.header.frame_id)
    check_text("camera_info", "camera_info.distortion_model", info.distortion_model)
    roi = info.roi
    for name, value in (("binning_x", info.binning_x), ("binning_y", info.binning_y),
                        ("roi.x_offset", roi.x_offset), ("roi.y_offset", roi.y_offset),
                        ("roi.width", roi.width), ("roi.height", roi.height)):
        check_int("camera_info", f"camera_info.{name}", int(value), 0, MAX_IMAGE_SIDE)
    check_camera_info(_floats(info.k), int(info.width), int(info.height), d=_floats(info.d),
                      r=_floats(info.r), p=_floats(info.p))


def packet_of_serialized(raw: bytes, verify: Callable[[Any], None] | None = None
                         ) -> tuple[FeaturePacket, ArrayLike]:
    """The packet and camera K of the serialized SplitFeatures ``raw`` (read without rclpy,
    ``features_cdr.read_features``, then ``msg_to_packet``'s checks; PacketRejected);
    ``verify(msg)`` first, before any other use of the message (a signature check, which
    raises its own rejection)."""
    msg = read_features(raw)
    if verify is not None:
        verify(msg)
    return msg_to_packet(msg), msg.camera_info.k.copy()  # not a view that keeps ``raw``


def send_fps_of(msg: Any) -> float:
    """The edge's announced frame rate, checked (PacketRejected); 0.0 (unknown) for a message
    recorded before the field existed (a rosbags message of an older definition)."""
    return check_send_fps(getattr(msg, "send_fps", 0.0))


def _floats(values: Any) -> np.ndarray:
    """A message's float array (a list, array.array or numpy array) as float64 (float32
    fields widen exactly)."""
    return np.asarray(values, np.float64).ravel()
