"""The pool topic: ServerAnnouncement <-> ``Announcement``, its signature, its QoS.

Conversion copies no list longer than its bound (``pool_announcement.MAX_*``) and then checks
every value (``check_announcement``); a violation is ``AnnouncementRejected``. Signing follows
``features_auth``: HMAC-SHA256 over every field but ``auth_tag``, in the order of
``SIGNED_FIELDS`` (a test checks the list against the message definition); replays are
refused per server id.

QoS (docs/POOL.md): best effort, volatile, keep last ``POOL_DEPTH``. Announcements are
periodic state: a lost one is replaced a period later, a late joiner needs none of the old
ones, and a reliable writer would only hold on to samples for a dead reader. One keyless topic
carries every server, so the reader's history must hold a burst from all of them. A dead
server is noticed from its own silence (``PoolView.silence_s``): DDS deadline and liveliness
are per topic instance and per writer count, and rclpy's events name no writer, so they
cannot say *which* server stopped.
"""

from __future__ import annotations

import array
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mtl_split.msg import ServerAnnouncement
from mtl_split_core.auth import AuthRejected, Signer, Verifier, canonical_bytes
from mtl_split_core.runtime.pool_announcement import (
    MAX_CODECS,
    MAX_FINGERPRINTS,
    MAX_ROBOTS,
    MAX_SPLITS,
    Announcement,
    AnnouncementRejected,
    check_announcement,
)
from mtl_split_ros.features_auth import stamp_ns

DOMAIN = "mtl_split/ServerAnnouncement/auth/1"
POOL_DEPTH = 32
POOL_QOS = QoSProfile(depth=POOL_DEPTH, reliability=ReliabilityPolicy.BEST_EFFORT,
                      history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)

# (attribute path, canonical kind) of every signed field, in signing order.
SIGNED_FIELDS: tuple[tuple[str, str], ...] = (
    ("header.stamp.sec", "i32"), ("header.stamp.nanosec", "u32"), ("header.frame_id", "str"),
    ("server_id", "str"), ("sequence", "u64"), ("input_topic", "str"),
    ("model_fingerprints", "str[]"), ("split_indices", "u8[]"), ("codecs", "str[]"),
    ("capacity_fps", "f32"), ("load_fps", "f32"), ("queue_ms", "f32"),
    ("latency_ms_p99", "f32"), ("robots", "str[]"), ("accepting", "bool"),
    ("refusal", "str"), ("refused", "str[]"), ("refused_reasons", "str[]"),
    ("auth_key_id", "str"), ("auth_sequence", "u64"),
)
_GETTERS = tuple((path, kind, attrgetter(path)) for path, kind in SIGNED_FIELDS)
# Lists longer than these are rejected before they are copied: field -> (bound, reason).
_LIST_BOUNDS = {"model_fingerprints": (MAX_FINGERPRINTS, "fingerprints"),
                "split_indices": (MAX_SPLITS, "splits"), "codecs": (MAX_CODECS, "codecs"),
                "robots": (MAX_ROBOTS, "robots"), "refused": (MAX_ROBOTS, "refused"),
                "refused_reasons": (MAX_ROBOTS, "refused")}


def _fields(msg: Any) -> Any:
    """(name, kind, value) of every signed field; a string list becomes one field per entry
    count + entries (canonical_bytes has no list-of-strings kind)."""
    for path, kind, get in _GETTERS:
        value = get(msg)
        if kind == "str[]":
            yield path, "u32", len(value)
            for i, item in enumerate(value):
                yield f"{path}[{i}]", "str", item
        else:
            yield path, kind, value


def signed_bytes(msg: Any) -> bytes:
    """The canonical bytes the tag of ``msg`` is computed over."""
    return canonical_bytes(DOMAIN, _fields(msg))


def sign(msg: Any, signer: Signer) -> None:
    """Set ``msg``'s auth fields (call it last, after every other field is final)."""
    msg.auth_key_id = signer.key_id
    msg.auth_sequence = signer.next_sequence()
    msg.auth_tag = array.array("B", signer.tag(signed_bytes(msg)))


def verify(msg: Any, verifier: Verifier, now_ns: int) -> None:
    """Accept ``msg`` or raise AuthRejected (``Verifier.verify``); sequences per server id."""
    tag, key_id = bytes(msg.auth_tag), str(msg.auth_key_id)
    verifier.secret(key_id, tag)  # no work for unsigned / unknown-key messages
    _check_lengths(msg)  # no signed bytes for an oversized message
    verifier.verify(("pool", str(msg.server_id)[:64]), key_id, int(msg.auth_sequence),
                    stamp_ns(msg), now_ns, signed_bytes(msg), tag)


def announcement_to_msg(ann: Announcement, stamp: Any, signer: Signer | None = None
                        ) -> ServerAnnouncement:
    """The message for ``ann`` with header stamp ``stamp`` (builtin_interfaces/Time), signed
    when ``signer`` is given."""
    msg = ServerAnnouncement(
        server_id=ann.server_id, sequence=ann.sequence, input_topic=ann.input_topic,
        model_fingerprints=list(ann.fingerprints), split_indices=list(ann.splits),
        codecs=list(ann.codecs), capacity_fps=float(ann.capacity_fps),
        load_fps=float(ann.load_fps), queue_ms=float(ann.queue_ms),
        latency_ms_p99=float(ann.latency_ms_p99), robots=list(ann.robots),
        accepting=ann.accepting, refusal=ann.refusal,
        refused=[r for r, _ in ann.refused], refused_reasons=[w for _, w in ann.refused])
    msg.header.stamp = stamp
    if signer is not None:
        sign(msg, signer)
    return msg


def msg_to_announcement(msg: Any) -> Announcement:
    """The checked ``Announcement`` of ``msg``; AnnouncementRejected names the field."""
    _check_lengths(msg)
    if len(msg.refused) != len(msg.refused_reasons):
        raise AnnouncementRejected("refused", "refused and refused_reasons differ in length")
    return check_announcement(Announcement(
        server_id=str(msg.server_id), sequence=int(msg.sequence),
        input_topic=str(msg.input_topic), fingerprints=tuple(msg.model_fingerprints),
        splits=tuple(int(s) for s in msg.split_indices), codecs=tuple(msg.codecs),
        capacity_fps=float(msg.capacity_fps), load_fps=float(msg.load_fps),
        queue_ms=float(msg.queue_ms), latency_ms_p99=float(msg.latency_ms_p99),
        robots=tuple(msg.robots), accepting=bool(msg.accepting), refusal=str(msg.refusal),
        refused=tuple(zip(msg.refused, msg.refused_reasons))))


def _check_lengths(msg: Any) -> None:
    for name, (bound, reason) in _LIST_BOUNDS.items():
        if len(getattr(msg, name)) > bound:
            raise AnnouncementRejected(reason, f"{name}: {len(getattr(msg, name))} entries "
                                       f"(at most {bound})")


def decode(msg: Any, verifier: Verifier | None, now_ns: int) -> Announcement:
    """Verify (when ``verifier`` is set) and convert one received message; raises
    AuthRejected or AnnouncementRejected (both carry ``reason``)."""
    if verifier is not None:
        verify(msg, verifier, now_ns)
    return msg_to_announcement(msg)


def subscribe(node: Node, topic: str, verifier: Verifier | None,
              on_announcement: Callable[[Announcement | None, str, Any], None]) -> Any:
    """Subscribe ``topic`` (the pool QoS); each message becomes ``on_announcement(ann,
    'ok', msg)`` or, rejected, ``on_announcement(None, reason, msg)``. The edge node and
    `mtl-split fleet status` share it."""
    def receive(msg: Any) -> None:
        try:
            ann = decode(msg, verifier, node.get_clock().now().nanoseconds)
        except (AuthRejected, AnnouncementRejected) as err:
            on_announcement(None, err.reason, msg)
            return
        on_announcement(ann, "ok", msg)
    return node.create_subscription(ServerAnnouncement, topic, receive, POOL_QOS)
