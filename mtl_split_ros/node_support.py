"""Pieces both nodes share: newest-frame slot, rejection counting, output gate, diagnostics,
main()."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.node import Node
from std_msgs.msg import Header

from mtl_split_ros.params import ParameterError
from mtl_split_ros.shutdown import StopSignals, init_without_signal_handlers, shutdown_quietly

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one pending item: a new one replaces (drops) an unprocessed one.

    The subscription callback puts, a worker thread takes. This is how the nodes keep only the
    newest frame while busy instead of queueing without bound.
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._cv = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item: T) -> None:
        with self._cv:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cv.notify()

    def take(self, timeout: float = 0.2) -> T | None:
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

    def __init__(self, logger: RcutilsLogger, period_s: float = 5.0) -> None:
        self._logger = logger
        self._period = period_s
        self._last: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()  # the worker counts while the diagnostics timer reads

    def __call__(self, reason: str, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            count = self._counts[reason] = self._counts.get(reason, 0) + 1
            if now - self._last.get(reason, -1e9) < self._period:
                return
            self._last[reason] = now
        self._logger.warning(f"dropped input ({reason}, {count} so far): {detail}")

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the counts by reason."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def describe_header(header: Header) -> str:
    """A message's stamp and frame for log lines (the frame id cut short: it is input)."""
    frame = header.frame_id if len(header.frame_id) <= 64 else header.frame_id[:64] + "..."
    return f"stamp {header.stamp.sec}.{header.stamp.nanosec:09d}, frame {frame!r}"


def handle_isolated(handle: Callable[[Any], None], msg: Any, rejections: Rejections) -> None:
    """Run ``handle(msg)``; an unexpected exception costs that message only.

    It is counted (reason ``internal``) and logged rate-limited with the message's stamp, so a
    worker thread survives whatever one message does to it.
    """
    try:
        handle(msg)
    except Exception as err:  # noqa: BLE001 - the isolation boundary of one message
        rejections("internal", f"{type(err).__name__}: {err} ({describe_header(msg.header)})")


class OutputGate:
    """Publishing happens only while the node is open.

    The worker publishes through ``run``; ``close`` waits for a publish in progress and after it
    nothing is published, so no worker publishes into a destroyed node or shut-down context.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True

    def run(self, publish: Callable[..., None], *args: Any) -> bool:
        """``publish(*args)`` unless closed; whether it ran."""
        with self._lock:
            if not self._open:
                return False
            publish(*args)
            return True

    def close(self) -> None:
        with self._lock:
            self._open = False


def diagnostic_status(name: str, hardware_id: str, values: Mapping[str, object],
                      warn: str | None = None) -> DiagnosticStatus:
    status = DiagnosticStatus(name=name, hardware_id=hardware_id)
    status.level = DiagnosticStatus.WARN if warn else DiagnosticStatus.OK
    status.message = warn or "ok"
    status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
    return status


def diagnostic_array(node: Node, statuses: Iterable[DiagnosticStatus]) -> DiagnosticArray:
    arr = DiagnosticArray()
    arr.header.stamp = node.get_clock().now().to_msg()
    arr.status = list(statuses)
    return arr


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def run_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Create and spin a node until SIGINT/SIGTERM; exit code 0, or 2 for bad parameters.

    Shutdown order: stop spinning, ``node.close()`` (stops and joins the node's workers), destroy
    the node, shut the context down — so no thread ever touches a dead node or context.
    """
    with StopSignals() as stop:
        init_without_signal_handlers(args)
        node: Node | None = None
        executor: SingleThreadedExecutor | None = None
        try:
            node = make_node()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            while not stop.is_set() and executor.context.ok():  # a node may end it itself
                executor.spin_once(timeout_sec=0.1)
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
            if executor is not None:
                executor.shutdown()
            if node is not None:
                node.destroy_node()
            shutdown_quietly()
    return 0
