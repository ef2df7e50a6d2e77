"""ServerAnnouncement <-> Announcement: round trip over the wire format, every field signed
(message introspection), forged / replayed / unsigned / oversized messages refused, and the
pool subscription over real DDS."""

import copy
import math
import time

import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message

from mtl_split.msg import ServerAnnouncement
from mtl_split_core.auth import AuthRejected, KeyRing, Signer, Verifier
from mtl_split_core.runtime.pool_announcement import (
    MAX_ROBOTS,
    POOL_TOPIC,
    Announcement,
    AnnouncementRejected,
    default_input_topic,
)
from mtl_split_ros import pool_msg
from mtl_split_ros.pool_msg import (
    SIGNED_FIELDS,
    announcement_to_msg,
    msg_to_announcement,
    verify,
)

RING = KeyRing({"k1": bytes([1]) * 32})
ANN = Announcement(server_id="gpu0_1", sequence=42, input_topic=default_input_topic("gpu0_1"),
                   fingerprints=("abc123",), splits=(1, 2), codecs=("q4-zstd/1",),
                   capacity_fps=340.0, load_fps=120.5, queue_ms=1.5, latency_ms_p99=27.0,
                   robots=("r1", "fleet/r2"), accepting=False, refusal="full",
                   refused=(("r9", "full: load 300 of 340 frames/s"),))


def now_stamp():
    ns = time.time_ns()
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


def _leaves(msg, prefix=""):
    out = []
    for name, typ in msg.get_fields_and_field_types().items():
        if "/" in typ and "<" not in typ and "[" not in typ:
            out += _leaves(getattr(msg, name), f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_round_trip_over_the_wire_format():
    msg = deserialize_message(serialize_message(announcement_to_msg(ANN, now_stamp())),
                              ServerAnnouncement)
    back = msg_to_announcement(msg)
    assert back == ANN


def test_round_trip_keeps_nan_statistics_of_a_server_without_frames():
    fresh = Announcement(server_id="s", sequence=1, input_topic=default_input_topic("s"),
                         fingerprints=("f",))
    back = msg_to_announcement(announcement_to_msg(fresh, now_stamp()))
    assert math.isnan(back.queue_ms) and math.isnan(back.latency_ms_p99)


def test_signed_fields_are_every_field_but_the_tag():
    assert [p for p, _ in SIGNED_FIELDS] == [
        f for f in _leaves(ServerAnnouncement()) if f != "auth_tag"]


def _mutate(msg, path):
    owner = msg
    for part in path.split(".")[:-1]:
        owner = getattr(owner, part)
    name = path.split(".")[-1]
    value = getattr(owner, name)
    if isinstance(value, bool):
        setattr(owner, name, not value)
    elif isinstance(value, str):
        setattr(owner, name, value + "x")
    elif isinstance(value, int):
        setattr(owner, name, value ^ 1)
    elif isinstance(value, float):
        setattr(owner, name, value + 1.0)
    elif len(value) and isinstance(value[0], str):
        setattr(owner, name, [value[0] + "x", *value[1:]])
    elif len(value):
        value[0] ^= 1
    else:
        setattr(owner, name, [1])


@pytest.mark.parametrize("path", [p for p, _ in SIGNED_FIELDS if not p.startswith("auth_")])
def test_a_change_to_any_signed_field_breaks_the_tag(path):
    msg = announcement_to_msg(ANN, now_stamp(), Signer(RING))
    verify(copy.deepcopy(msg), Verifier(RING), time.time_ns())
    _mutate(msg, path)
    with pytest.raises(AuthRejected) as err:
        verify(msg, Verifier(RING), time.time_ns())
    assert err.value.reason == "auth_forged"


def test_replayed_unsigned_unknown_key_and_stale_announcements_are_refused():
    verifier = Verifier(RING, max_age_s=5.0)
    msg = announcement_to_msg(ANN, now_stamp(), Signer(RING))
    verify(msg, verifier, time.time_ns())
    cases = {"auth_replay": msg, "auth_missing": announcement_to_msg(ANN, now_stamp()),
             "auth_unknown_key": announcement_to_msg(
                 ANN, now_stamp(), Signer(KeyRing({"k2": bytes([2]) * 32}))),
             "auth_stale": announcement_to_msg(ANN, Time(sec=1000), Signer(RING))}
    for reason, m in cases.items():
        with pytest.raises(AuthRejected) as err:
            verify(m, verifier, time.time_ns())
        assert err.value.reason == reason


def test_oversized_and_inconsistent_lists_are_refused_before_copying():
    msg = announcement_to_msg(ANN, now_stamp())
    msg.robots = [f"r{i}" for i in range(MAX_ROBOTS + 1)]
    with pytest.raises(AnnouncementRejected) as err:
        msg_to_announcement(msg)
    assert err.value.reason == "robots"
    msg = announcement_to_msg(ANN, now_stamp())
    msg.refused_reasons = []
    with pytest.raises(AnnouncementRejected, match="differ in length"):
        msg_to_announcement(msg)
    msg = announcement_to_msg(ANN, now_stamp())
    msg.capacity_fps = float("inf")
    with pytest.raises(AnnouncementRejected) as err:
        msg_to_announcement(msg)
    assert err.value.reason == "capacity"


@pytest.mark.ros
def test_the_pool_subscription_over_dds_delivers_checked_announcements(ros_node):
    import rclpy
    got = []
    sub = pool_msg.subscribe(ros_node, POOL_TOPIC, Verifier(RING),
                             lambda ann, verdict, msg: got.append((verdict, ann)))
    pub = ros_node.create_publisher(ServerAnnouncement, POOL_TOPIC, pool_msg.POOL_QOS)
    signer = Signer(RING)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and {"ok", "auth_missing"} - {v for v, _ in got}:
            pub.publish(announcement_to_msg(ANN, ros_node.get_clock().now().to_msg(), signer))
            pub.publish(announcement_to_msg(ANN, ros_node.get_clock().now().to_msg()))
            rclpy.spin_once(ros_node, timeout_sec=0.2)
        assert ("ok", ANN) in got
        assert any(v == "auth_missing" and a is None for v, a in got)
    finally:
        ros_node.destroy_subscription(sub)
        ros_node.destroy_publisher(pub)
