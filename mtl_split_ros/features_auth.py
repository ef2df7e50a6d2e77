"""Signing and verifying SplitFeatures messages (HMAC-SHA256, see mtl_split_core.auth).

The tag covers every field of the message except ``auth_tag`` itself, in the fixed order of
``SIGNED_FIELDS`` (a test checks that list against the message definition, so a field added to
the message without being signed fails the tests).
"""

from __future__ import annotations

import array
from operator import attrgetter
from typing import Any

from rclpy.impl.rcutils_logger import RcutilsLogger

from mtl_split_core.auth import (
    KeyFileError,
    KeyRing,
    Signer,
    Verifier,
    canonical_bytes,
    load_key_file,
)
from mtl_split_ros.params import ParameterError

DOMAIN = "mtl_split/SplitFeatures/auth/1"

_HEADER = (("stamp.sec", "i32"), ("stamp.nanosec", "u32"), ("frame_id", "str"))
_CAMERA_INFO = (*((f"header.{path}", kind) for path, kind in _HEADER),
                ("height", "u32"), ("width", "u32"), ("distortion_model", "str"),
                ("d", "f64[]"), ("k", "f64[]"), ("r", "f64[]"), ("p", "f64[]"),
                ("binning_x", "u32"), ("binning_y", "u32"), ("roi.x_offset", "u32"),
                ("roi.y_offset", "u32"), ("roi.height", "u32"), ("roi.width", "u32"),
                ("roi.do_rectify", "bool"))
# (attribute path, canonical kind) of every signed field, in signing order.
SIGNED_FIELDS: tuple[tuple[str, str], ...] = (
    *((f"header.{path}", kind) for path, kind in _HEADER),
    *((f"camera_info.{path}", kind) for path, kind in _CAMERA_INFO),
    ("model_id", "str"), ("model_fingerprint", "str"), ("split_index", "u8"),
    ("source_height", "u32"), ("source_width", "u32"), ("transform", "f32[]"),
    ("codec", "str"), ("shape", "u32[]"), ("scale", "f32[]"), ("offset", "f32[]"),
    ("data", "bytes"), ("edge_ms", "f32"), ("probe", "bool"), ("send_fps", "f32"),
    ("auth_key_id", "str"), ("auth_sequence", "u64"),
)
_GETTERS = tuple((path, kind, attrgetter(path)) for path, kind in SIGNED_FIELDS)


def signed_bytes(msg: Any) -> bytes:
    """The canonical bytes the tag of ``msg`` is computed over."""
    return canonical_bytes(DOMAIN, ((path, kind, get(msg)) for path, kind, get in _GETTERS))


def sign(msg: Any, signer: Signer) -> None:
    """Set ``msg``'s auth fields: the signer's key id, its next sequence number, the tag.
    Call it last, after every other field is final."""
    msg.auth_key_id = signer.key_id
    msg.auth_sequence = signer.next_sequence()
    msg.auth_tag = array.array("B", signer.tag(signed_bytes(msg)))


def stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def verify(msg: Any, verifier: Verifier, topic: str, now_ns: int) -> None:
    """Accept ``msg`` received on ``topic`` or raise AuthRejected (see Verifier.verify).
    Sequences are tracked per topic (one per robot) and camera frame."""
    tag = bytes(msg.auth_tag)
    key_id = str(msg.auth_key_id)
    verifier.secret(key_id, tag)  # before building the bytes: no work for unsigned/unknown
    verifier.verify((topic, str(msg.header.frame_id)), key_id, int(msg.auth_sequence),
                    stamp_ns(msg), now_ns, signed_bytes(msg), tag)


def load_keys(path: str, logger: RcutilsLogger) -> KeyRing | None:
    """The key ring of parameter ``auth_key_file`` (None when '': authentication off).
    A bad file raises ParameterError (the node exits with one line, status 2)."""
    if not path:
        return None
    try:
        ring = load_key_file(path)
    except KeyFileError as err:
        raise ParameterError(f"parameter 'auth_key_file': {err}") from None
    for warning in ring.warnings:
        logger.warning(warning)
    return ring
