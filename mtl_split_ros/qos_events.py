"""What happens to a subscription's messages before they reach the node.

``SubscriptionHealth`` hands out rclpy QoS event callbacks for each subscription: it counts
messages the middleware reports as lost (``message_lost``: e.g. fragments of a large best-effort
image that never arrived) for /diagnostics, and warns once per topic, naming both sides'
policies, when a publisher's QoS is incompatible (then no message ever arrives and nothing else
would say why).
"""

from __future__ import annotations

import threading

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


class SubscriptionHealth:
    def __init__(self, node: Node) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._lost: dict[str, int] = {}
        self._warned: set[str] = set()

    def callbacks(self, topic: str, requested: QoSProfile) -> SubscriptionEventCallbacks:
        """Event callbacks for the subscription to ``topic`` created with ``requested``."""
        name = self._node.resolve_topic_name(topic)
        with self._lock:
            self._lost.setdefault(name, 0)
        # Only these two handlers: rclpy's default ones (incompatible type) would cost every
        # executor wait a walk over them too (see the server's NO_PUBLISHER_EVENTS).
        return SubscriptionEventCallbacks(
            message_lost=lambda info: self._on_lost(name, info.total_count_change),
            incompatible_qos=lambda info: self._on_incompatible(
                name, requested, info.last_policy_kind.name),
            use_default_callbacks=False)

    def lost(self, topic: str | None = None) -> int:
        """Messages lost before the node on ``topic`` (resolved or relative), or on all."""
        with self._lock:
            if topic is None:
                return sum(self._lost.values())
            return self._lost.get(self._node.resolve_topic_name(topic), 0)

    def _on_lost(self, topic: str, count: int) -> None:
        with self._lock:
            self._lost[topic] = self._lost.get(topic, 0) + int(count)

    def _on_incompatible(self, topic: str, requested: QoSProfile, policy: str) -> None:
        with self._lock:
            if topic in self._warned:
                return
            self._warned.add(topic)
        offered = [info.qos_profile for info in self._node.get_publishers_info_by_topic(topic)]
        bad = [q for q in offered if not compatible(q, requested)] or offered
        offers = "; ".join(sorted({describe(q) for q in bad})) or "unknown (not discovered)"
        self._node.get_logger().warning(
            f"incompatible QoS on '{topic}' ({policy}): the publisher offers {offers}; this "
            f"subscription requests {describe(requested)}. No messages will arrive from it; "
            f"make the two QoS settings match (e.g. the node's input_qos parameter).")


def describe(qos: QoSProfile) -> str:
    return (f"reliability {_name(qos.reliability)}, durability {_name(qos.durability)}, "
            f"history {_name(qos.history)} depth {qos.depth}")


def compatible(offered: QoSProfile, requested: QoSProfile) -> bool:
    """The two request-vs-offer rules that matter for our profiles (DDS RxO)."""
    if requested.reliability == ReliabilityPolicy.RELIABLE and \
            offered.reliability == ReliabilityPolicy.BEST_EFFORT:
        return False
    return not (requested.durability == DurabilityPolicy.TRANSIENT_LOCAL and
                offered.durability == DurabilityPolicy.VOLATILE)


def _name(policy: object) -> str:
    return getattr(policy, "name", str(policy))
