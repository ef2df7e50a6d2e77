"""Pieces both nodes share: newest-frame slot, rejection counting, diagnostics, main()."""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException

from mtl_split_ros.params import ParameterError


class LatestSlot:
    """Holds at most one pending item: a new one replaces (drops) an unprocessed one.

    The subscription callback puts, a worker thread takes. This is how the nodes keep only the
    newest frame while busy instead of queueing without bound.
    """

    def __init__(self):
        self._item = None
        self._cv = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item) -> None:
        with self._cv:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cv.notify()

    def take(self, timeout: float = 0.2):
        """The pending item, or None after ``timeout`` seconds / when closed."""
        with self._cv:
            if self._item is None and not self.closed:
                self._cv.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()


class Rejections:
    """Counts rejected inputs by reason and logs one clear, rate-limited line per reason."""

    def __init__(self, logger, period_s: float = 5.0):
        self._logger = logger
        self._period = period_s
        self._last: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, reason: str, detail: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last.get(reason, -1e9) >= self._period:
            self._last[reason] = now
            self._logger.warning(f"dropped input ({reason}, {self.counts[reason]} so far): "
                                 f"{detail}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def diagnostic_status(name: str, hardware_id: str, values: dict, warn: str | None = None
                      ) -> DiagnosticStatus:
    status = DiagnosticStatus(name=name, hardware_id=hardware_id)
    status.level = DiagnosticStatus.WARN if warn else DiagnosticStatus.OK
    status.message = warn or "ok"
    status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
    return status


def diagnostic_array(node, statuses) -> DiagnosticArray:
    arr = DiagnosticArray()
    arr.header.stamp = node.get_clock().now().to_msg()
    arr.status = list(statuses)
    return arr


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def run_node(make_node: Callable[[], object], args=None) -> int:
    """Create and spin a node; bad parameters end it with one clear line and exit code 2."""
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except ParameterError as err:
        print(f"[FATAL] {err}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
