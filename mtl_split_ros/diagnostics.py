"""/diagnostics messages: one status per thing a node reports on, its level from its problems."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node


def status_name(node: Node, what: str) -> str:
    """The name of a node's status about ``what`` (the node itself, or one of its inputs)."""
    return f"{node.get_name()}: {what}"


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
