"""The watchdog: a worker that stalls while input waits, or dies, is reported (ERROR on
/diagnostics) and replaced; outputs flow again. Unit tests drive SupervisedWorker directly;
the ROS tests make a real edge (or server) process hang or die on one chosen frame through a patch
applied only inside the test-launched process (production code has no such hook)."""

import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import Image

from mtl_split.msg import SplitFeatures
from mtl_split_core.runtime.latest_slot import LatestSlot
from mtl_split_core.runtime.output_gate import OutputGate
from mtl_split_ros.image_msg import fill_image
from mtl_split_ros.qos import qos_from_name
from mtl_split_ros.watchdog import SupervisedWorker
from support.procs import python_process, stop
from support.ros_nodes import node_args, wait_for

REL = qos_from_name("reliable", depth=10)
POISON = 1000  # the patched node hangs or dies on the first frame it takes from here on
# Patches EdgeNode._process in the launched process only, then runs the node's main().
PATCHED_EDGE = """
import sys, threading
from mtl_split_edge import node
original = node.EdgeNode._process
fired = []
def process(self, msg):
    if msg.header.stamp.sec >= {poison} and not fired:
        fired.append(msg.header.stamp.sec)
        {action}
    original(self, msg)
node.EdgeNode._process = process
sys.exit(node.main())
"""
HANG = "threading.Event().wait()"
DIE = "raise SystemExit('worker ends')"  # not an Exception: per-message isolation lets it go


class Logger:
    def __init__(self):
        self.errors = []

    def error(self, text):
        self.errors.append(text)


def _wait(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _worker(handle, stall_timeout=0.3):
    slot, gate, log, published = LatestSlot(), OutputGate(), Logger(), []

    def step():
        item = slot.take(timeout=0.05)
        if item is not None:
            handle(item)
            gate.run(published.append, item)

    worker = SupervisedWorker("w", step, slot.waiting_s, gate, log, stall_timeout, window_s=60)
    worker.start()
    return worker, slot, log, published


def test_a_stalled_worker_is_replaced_and_its_late_output_refused():
    release = threading.Event()

    def handle(item):
        if item == "hang":
            release.wait(10)

    worker, slot, log, published = _worker(handle)
    try:
        slot.put("hang")
        assert _wait(lambda: slot.waiting_s() == 0)  # taken: the worker is stuck in it
        worker.check()
        assert worker.problem() is None, "no input waiting: not a stall"
        slot.put("a")
        time.sleep(0.4)
        worker.check()  # "a" waited > 0.3 s
        assert worker.problem() == "worker stalled, restarted"
        assert "worker stalled (1 so far)" in log.errors[0]
        assert _wait(lambda: "a" in published), "the new thread handles the waiting input"
        release.set()
        time.sleep(0.2)
        assert "hang" not in published, "the abandoned thread's output is refused"
        assert worker.values() == {"worker_restarts": 1, "worker_stalls": 1,
                                   "worker_deaths": 0, "worker_threads_abandoned": 1}
    finally:
        release.set()
        slot.close()
        worker.stop(5)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_is_restarted():
    def handle(item):
        if item == "die":
            raise SystemExit

    worker, slot, log, published = _worker(handle)
    try:
        slot.put("die")
        assert _wait(lambda: slot.waiting_s() == 0)
        time.sleep(0.1)
        worker.check()
        assert worker.problem() == "worker died, restarted"
        slot.put("b")
        assert _wait(lambda: "b" in published)
        assert worker.values()["worker_deaths"] == 1 and "worker died" in log.errors[0]
    finally:
        slot.close()
        worker.stop(5)


def test_a_stopped_worker_is_not_restarted():
    worker, slot, log, _ = _worker(lambda item: None)
    slot.close()
    worker.stop(5)
    worker.check()
    assert worker.problem() is None and log.errors == []


class EdgeWatch:
    """Features by stamp and the edge's latest /diagnostics status, in the test node."""

    def __init__(self, node):
        self.got = set()
        self.levels = []  # (level, message) of every edge status, in order
        node.create_subscription(SplitFeatures, "mtl_split/features",
                                 lambda m: self.got.add(m.header.stamp.sec), REL)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name.endswith(": edge"):
                self.levels.append((s.level, s.message))

    def last_level(self):
        return self.levels[-1][0] if self.levels else None


def _image(sec):
    rgb = np.random.default_rng(sec).integers(0, 256, (96, 128, 3), np.uint8)
    msg = fill_image(Image(), rgb, "rgb8")
    msg.header.stamp.sec = sec
    return msg


def _stream_until(ros, pub, first_sec, predicate, procs, timeout):
    """Publish frames first_sec, first_sec+1, ... at ~5 Hz until ``predicate()``."""
    sec, end = first_sec, time.monotonic() + timeout
    while time.monotonic() < end:
        pub.publish(_image(sec))
        sec += 1
        if wait_for(ros, predicate, 0.2, procs):
            return sec
    raise AssertionError(f"timed out at frame {sec}; output: {[stop(p)[-2000:] for p in procs]}")


@pytest.mark.ros
@pytest.mark.parametrize("action, message", [(HANG, "worker stalled, restarted"),
                                             (DIE, "worker died, restarted")])
def test_edge_worker_hang_or_death_is_reported_and_recovered(ros_node, model_dir, action,
                                                             message):
    ros = ros_node
    watch = EdgeWatch(ros)
    pub = ros.create_publisher(Image, "image", REL)
    code = PATCHED_EDGE.format(poison=POISON, action=action)
    args = node_args("mtl_split_edge", code=code, model=model_dir, device="cpu",
                     stall_timeout=1.0, diagnostics_period=0.2, diagnostics_window=3.0,
                     fallback_after=0.0)
    try:
        with python_process(args) as edge:
            assert wait_for(ros, lambda: pub.get_subscription_count() > 0, 90, (edge,))
            _stream_until(ros, pub, 1, lambda: bool(watch.got), (edge,), 60)
            assert _wait_level(ros, watch, DiagnosticStatus.OK, (edge,))
            # Frames keep arriving: they wait in the slot while the worker hangs (or is gone).
            _stream_until(ros, pub, POISON,
                          lambda: (DiagnosticStatus.ERROR, message) in watch.levels, (edge,), 30)
            _stream_until(ros, pub, 2000, lambda: any(s >= 2000 for s in watch.got), (edge,),
                          30)
            # The incident leaves the 3 s window: back to OK while frames are handled.
            _stream_until(ros, pub, 3000, lambda: watch.last_level() == DiagnosticStatus.OK,
                          (edge,), 30)
            log = stop(edge)
    finally:
        ros.destroy_publisher(pub)
    assert f"{message.split(',')[0]} (1 so far)" in log, log


def _wait_level(ros, watch, level, procs, timeout=30):
    return wait_for(ros, lambda: watch.last_level() == level, timeout, procs)


PATCHED_SERVER = """
import sys, threading
from mtl_split_core.runtime import scheduler
from mtl_split_server import node
original = scheduler.BatchScheduler.run
fired = []
def run(self, taken, started):
    stamps = [frame.tag.sec for _, frame in taken]  # tag: the arrival's envelope
    if max(stamps) >= {poison} and not fired:
        fired.append(max(stamps))
        threading.Event().wait()
    original(self, taken, started)
scheduler.BatchScheduler.run = run
sys.exit(node.main())
"""


@pytest.mark.ros
def test_server_worker_hang_is_reported_and_recovered(ros_node, model_dir):
    from vision_msgs.msg import Detection2DArray
    ros = ros_node
    dets, levels = set(), []
    ros.create_subscription(Detection2DArray, "mtl_split/detections",
                            lambda m: dets.add(m.header.stamp.sec), REL)
    ros.create_subscription(DiagnosticArray, "/diagnostics", lambda m: levels.extend(
        (s.level, s.message) for s in m.status if s.name.endswith(": server")), 10)
    pub = ros.create_publisher(Image, "image", REL)
    server_args = node_args("mtl_split_server", code=PATCHED_SERVER.format(poison=POISON),
                            model=model_dir, device="cpu", stall_timeout=1.0,
                            diagnostics_period=0.2, diagnostics_window=3.0)
    try:
        with python_process(node_args("mtl_split_edge", model=model_dir, device="cpu")) as edge, \
                python_process(server_args) as server:
            procs = (edge, server)
            _stream_until(ros, pub, 1, lambda: bool(dets), procs, 90)
            _stream_until(ros, pub, POISON,
                          lambda: (DiagnosticStatus.ERROR, "worker stalled, restarted") in levels,
                          procs, 30)
            _stream_until(ros, pub, 2000, lambda: any(s >= 2000 for s in dets), procs, 30)
            log = stop(server)
    finally:
        ros.destroy_publisher(pub)
    assert "worker stalled (1 so far)" in log, log
