"""Pieces both nodes share: newest-frame slot, rejection counting (lifetime and recent),
per-message isolation, output gate, diagnostics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.node import Node
from std_msgs.msg import Header

from mtl_split_core.runtime.backends import BACKENDS
from mtl_split_core.runtime.device import PRECISIONS
from mtl_split_core.runtime.stats import RecentEvents
from mtl_split_ros.node_main import EXECUTORS
from mtl_split_ros.params import Param, positive

# Parameters every node that runs the network has (one definition for edge and server).
RUNTIME_PARAMS = [
    Param("device", "auto", "auto (CUDA if present, else CPU), cpu, cuda or cuda:N."),
    Param("precision", "fp32", "Network precision (fp16 only on CUDA).", PRECISIONS),
    Param("backend", "torch", "Inference runtime: torch, or onnxruntime (the files of "
          "`mtl-split export`; CUDA/TensorRT providers when installed).", BACKENDS),
    Param("onnx_dir", "", "Folder of the ONNX export for backend onnxruntime; '' = the model "
          "folder's onnx/."),
    Param("engine_cache", "", "TensorRT engine cache folder (onnxruntime's TensorRT provider); "
          "'' = none."),
]


def executor_param(default: str) -> Param:
    """The ``executor`` parameter (node_main.make_executor) with a node's own default."""
    return Param("executor", default, "ROS executor: single (rclpy's SingleThreadedExecutor) or "
                 "events (rclpy's EventsExecutor, C++, Kilted and newer: far less Python per "
                 "message; falls back to single, with a warning, where rclpy lacks it).",
                 EXECUTORS)
# Diagnostics and the watchdog of a node's worker.
SUPERVISION_PARAMS = [
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", check=positive,
          dynamic=True),
    Param("stall_timeout", 10.0, "Seconds input may wait untaken before the watchdog reports "
          "the worker stalled (ERROR on /diagnostics) and starts a new one.", check=positive),
    Param("diagnostics_window", 10.0, "Seconds of history behind the /diagnostics level: WARN "
          "while inputs were rejected, ERROR while the worker was restarted, within it.",
          check=positive),
]

T = TypeVar("T")
# Seconds of history behind diagnostic levels (rejections, internal errors, worker restarts).
RECENT_S = 10.0
INTERNAL = "internal"  # reason prefix of unexpected exceptions: internal_<Type>


class LatestSlot(Generic[T]):
    """Holds at most one pending item: a new one replaces (drops) an unprocessed one.

    The subscription callback puts, a worker thread takes. This is how the nodes keep only the
    newest frame while busy instead of queueing without bound. ``waiting_s`` (how long input
    has waited untaken) is what the watchdog looks at.
    """

    def __init__(self, window_s: float = RECENT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._item: T | None = None
        self._cv = threading.Condition()
        self._clock = clock
        self._waiting_since: float | None = None  # when the slot last went from empty to full
        self.drops = RecentEvents(window_s, clock)
        self.closed = False

    def put(self, item: T) -> T | None:
        """Hold ``item``; return the unprocessed item it replaced (dropped), or None."""
        with self._cv:
            replaced = self._item
            if replaced is not None:
                self.drops.add("drops")
            else:
                self._waiting_since = self._clock()
            self._item = item
            self._cv.notify()
            return replaced

    def take(self, timeout: float = 0.2) -> T | None:
        """The pending item, or None after ``timeout`` seconds / when closed."""
        with self._cv:
            if self._item is None and not self.closed:
                self._cv.wait(timeout)
            item, self._item = self._item, None
            self._waiting_since = None
            return item

    def waiting_s(self) -> float:
        """Seconds input has been waiting untaken (replacements included); 0 when empty."""
        with self._cv:
            since = self._waiting_since
        return 0.0 if since is None else self._clock() - since

    @property
    def dropped(self) -> int:
        """Items replaced before they were taken, since start."""
        return self.drops.total()

    def recent_drops(self) -> int:
        """Items replaced before they were taken, within the window."""
        return sum(self.drops.recent().values())

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()


class Rejections:
    """Counts rejected inputs by reason and logs one clear, rate-limited line per reason.

    Counts are kept for the node's lifetime and for the last ``window_s`` seconds: the
    diagnostics level comes from the recent ones (see ``problem``). Unexpected exceptions are
    counted by type as reason ``internal_<Type>``.
    """

    def __init__(self, logger: RcutilsLogger, period_s: float = 5.0,
                 window_s: float = RECENT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._period = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._events = RecentEvents(window_s, clock)
        self._lock = threading.Lock()  # the worker logs while the diagnostics timer reads

    def __call__(self, reason: str, detail: str) -> None:
        count = self._events.add(reason)
        now = self._clock()
        with self._lock:
            if now - self._last.get(reason, -1e9) < self._period:
                return
            self._last[reason] = now
        self._logger.warning(f"dropped input ({reason}, {count} so far): {detail}")

    def internal(self, err: Exception, where: str) -> None:
        """An unexpected exception while handling one message (``where``: its stamp/frame)."""
        self(f"{INTERNAL}_{type(err).__name__}", f"{type(err).__name__}: {err} ({where})")

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the lifetime counts by reason."""
        return self._events.totals()

    def recent(self) -> dict[str, int]:
        """Counts by reason within the window."""
        return self._events.recent()

    @property
    def total(self) -> int:
        return self._events.total()

    def values(self) -> dict[str, int]:
        """Diagnostics values: ``rejected`` (lifetime), ``rejected_recent`` (window),
        ``rejected_<reason>`` each and ``rejected_internal`` (all unexpected exceptions)."""
        counts = self.counts
        internal = sum(v for k, v in counts.items() if k.startswith(INTERNAL + "_"))
        return {"rejected": sum(counts.values()), "rejected_recent": sum(self.recent().values()),
                f"rejected_{INTERNAL}": internal,
                **{f"rejected_{k}": v for k, v in sorted(counts.items())}}

    def problem(self) -> str | None:
        """A WARN message while inputs were rejected within the window, else None."""
        recent = self.recent()
        internal = sorted(k for k in recent if k.startswith(INTERNAL + "_"))
        if internal:
            return "internal errors: " + ", ".join(k[len(INTERNAL) + 1:] for k in internal)
        if recent:
            return "rejecting input: " + ", ".join(sorted(recent))
        return None


def watchdog_period(stall_timeout: float) -> float:
    """Seconds between watchdog checks: a stall is seen within a quarter of its timeout."""
    return min(0.5, stall_timeout / 4)


def describe_header(header: Header) -> str:
    """A message's stamp and frame for log lines (the frame id cut short: it is input)."""
    frame = header.frame_id if len(header.frame_id) <= 64 else header.frame_id[:64] + "..."
    return f"stamp {header.stamp.sec}.{header.stamp.nanosec:09d}, frame {frame!r}"


def handle_isolated(handle: Callable[[Any], None], msg: Any, rejections: Rejections) -> None:
    """Run ``handle(msg)``; an unexpected exception costs that message only.

    It is counted by type (reason ``internal_<Type>``) and logged rate-limited with the
    message's stamp and frame, so a worker thread survives whatever one message does to it.
    """
    try:
        handle(msg)
    except Exception as err:  # noqa: BLE001 - the isolation boundary of one message
        rejections.internal(err, describe_header(msg.header))


class OutputGate:
    """Publishing happens only while the node is open, and never from an abandoned worker.

    The worker publishes through ``run``; ``close`` waits for a publish in progress and after it
    nothing is published, so no worker publishes into a destroyed node or shut-down context.
    ``revoke(thread)``: a worker thread the watchdog gave up on publishes nothing more (its
    late result would be older than what its replacement published meanwhile).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True
        self._revoked: set[threading.Thread] = set()

    def run(self, publish: Callable[..., None], *args: Any) -> bool:
        """``publish(*args)`` unless closed or called from a revoked thread; whether it ran."""
        with self._lock:
            if not self._open or threading.current_thread() in self._revoked:
                return False
            publish(*args)
            return True

    def revoke(self, thread: threading.Thread) -> None:
        with self._lock:
            self._revoked.add(thread)

    def close(self) -> None:
        with self._lock:
            self._open = False


def status_name(node: Node, part: str) -> str:
    """A /diagnostics status name: the node's fully qualified name, then what it is about
    (``/robot1/mtl_split_edge: edge``, ``/mtl_split_server: /robot1/mtl_split/features``).
    Unique per robot, so two robots' statuses never replace each other in rqt_robot_monitor
    or diagnostic_aggregator."""
    return f"{node.get_fully_qualified_name()}: {part}"


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
