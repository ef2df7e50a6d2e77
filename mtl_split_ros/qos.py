"""QoS profiles by name, so QoS is a plain string parameter in YAML and launch files."""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

QOS_PROFILES = ("sensor_data", "reliable", "best_effort", "reliable_transient_local")


def qos_from_name(name: str, depth: int = 1) -> QoSProfile:
    """The QoS profile called ``name`` (one of ``QOS_PROFILES``) with history ``depth``.

    Depth 1 by default: perception wants the newest frame, never a backlog.
    """
    if name == "sensor_data":
        profile = QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in
                                ("reliability", "durability", "history")}, depth=depth)
        return profile
    if name == "reliable":
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                          history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
    if name == "best_effort":
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                          history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
    if name == "reliable_transient_local":
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                          history=HistoryPolicy.KEEP_LAST,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    raise ValueError(f"unknown QoS profile {name!r}; expected one of {', '.join(QOS_PROFILES)}")
