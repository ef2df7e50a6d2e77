"""The isolation boundary of one ROS message: an unexpected exception costs that message only,
counted by type and logged with the message's stamp and frame."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from std_msgs.msg import Header

from mtl_split_core.runtime.rejections import Rejections, run_isolated


def describe_header(header: Header) -> str:
    """A message's stamp and frame for log lines (the frame id cut short: it is input)."""
    return describe_stamp(header.stamp.sec, header.stamp.nanosec, header.frame_id)


def describe_stamp(sec: int, nanosec: int, frame_id: str) -> str:
    """A stamp and frame for log lines (the frame id cut short: it is input)."""
    frame = frame_id if len(frame_id) <= 64 else frame_id[:64] + "..."
    return f"stamp {sec}.{nanosec:09d}, frame {frame!r}"


def handle_isolated(handle: Callable[[Any], None], msg: Any, rejections: Rejections) -> None:
    """Run ``handle(msg)`` for a message with a ``header``; an unexpected exception is counted
    (reason ``internal_<Type>``) and logged rate-limited with the message's stamp and frame,
    so a callback or worker thread survives whatever one message does to it."""
    run_isolated(handle, msg, rejections, lambda m: describe_header(m.header))
