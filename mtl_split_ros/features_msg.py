"""FeaturePacket <-> mtl_split/msg/SplitFeatures: the only place that knows the message fields."""

from __future__ import annotations

import array
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from mtl_split.msg import SplitFeatures
from mtl_split_core.codec import CodecError, EncodedTensor
from mtl_split_core.runtime.packet import FeaturePacket


def packet_to_msg(packet: FeaturePacket, header: Header | None = None,
                  camera_info: CameraInfo | None = None) -> SplitFeatures:
    """A SplitFeatures message for ``packet`` with the source image's header/camera_info."""
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
    return msg


def msg_to_packet(msg: Any) -> FeaturePacket:
    """The packet carried by a SplitFeatures message (rclpy or rosbags-deserialized).

    Field sanity is checked here only as far as the message layer goes; the codec validates the
    tensor itself when it is decoded. Raises CodecError for malformed fields.
    """
    transform = tuple(float(v) for v in np.asarray(msg.transform, np.float32).ravel())
    if len(transform) != 4 or not all(np.isfinite(transform)) or transform[0] <= 0 \
            or transform[1] <= 0:
        raise CodecError(f"transform {transform} must be 4 finite values with positive scales")
    if msg.source_width == 0 or msg.source_height == 0:
        raise CodecError(f"source size {msg.source_width}x{msg.source_height} is empty")
    tensor = EncodedTensor(
        codec=str(msg.codec),
        shape=tuple(int(v) for v in np.asarray(msg.shape).ravel()),
        scale=np.frombuffer(np.asarray(msg.scale, np.float32).tobytes(), np.float32),
        offset=np.frombuffer(np.asarray(msg.offset, np.float32).tobytes(), np.float32),
        data=np.asarray(msg.data, dtype=np.uint8).tobytes(),
    )
    return FeaturePacket(tensor=tensor, model_id=str(msg.model_id),
                         model_fingerprint=str(msg.model_fingerprint),
                         split_index=int(msg.split_index),
                         source_size=(int(msg.source_width), int(msg.source_height)),
                         transform=transform, edge_ms=float(msg.edge_ms))
