"""/diagnostics messages: one status per thing a node reports on, its level from its problems."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node


def status_name(node: Node, what: str) -> str:
    """A /diagnostics status name: the node's fully qualified name, then what it is about
    (``/robot1/mtl_split_edge: edge``, ``/mtl_split_server: /robot1/mtl_split/features``).
    Unique per robot, so two robots' statuses never replace each other in rqt_robot_monitor
    or diagnostic_aggregator."""
    return f"{node.get_fully_qualified_name()}: {what}"


def diagnostic_status(name: str, hardware_id: str, values: Mapping[str, object],
                      warn: str | None = None, error: str | None = None) -> DiagnosticStatus:
    """ERROR with ``error`` if given, else WARN with ``warn`` if given, else OK."""
    status = DiagnosticStatus(name=name, hardware_id=hardware_id)
    if error:
        status.level, status.message = DiagnosticStatus.ERROR, error
    elif warn:
        status.level, status.message = DiagnosticStatus.WARN, warn
    else:
        status.level, status.message = DiagnosticStatus.OK, "ok"
    status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
    return status


def diagnostic_array(node: Node, statuses: Iterable[DiagnosticStatus]) -> DiagnosticArray:
    arr = DiagnosticArray()
    arr.header.stamp = node.get_clock().now().to_msg()
    arr.status = list(statuses)
    return arr


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)
