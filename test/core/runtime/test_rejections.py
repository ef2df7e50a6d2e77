"""Rejection counts (thread-safe; recent ones set the diagnostics level) and the isolation
boundary of one item of work (exceptions counted by type)."""

import logging
import threading

from mtl_split_core.runtime.rejections import Rejections, run_isolated


class ListLogger:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(text)


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def test_recent_rejections_warn_then_clear_after_the_window():
    clock = FakeClock()
    rejections = Rejections(ListLogger(), window_s=10.0, clock=clock)
    assert rejections.problem() is None
    for _ in range(5):  # a burst of bad input
        rejections("bad_image", "x")
    rejections("shape", "y")
    assert rejections.problem() == "rejecting input: bad_image, shape"
    assert rejections.values()["rejected_recent"] == 6
    clock.t += 10.5  # then only good input for longer than the window
    assert rejections.problem() is None
    values = rejections.values()
    assert values["rejected_recent"] == 0
    assert values["rejected"] == 6 and values["rejected_bad_image"] == 5  # lifetime kept


def test_rejection_counts_are_safe_to_read_while_counting():
    rejections = Rejections(logging.getLogger("test"), period_s=1e9)
    stop = threading.Event()

    def count():
        i = 0
        while not stop.is_set():
            rejections(f"reason{i % 50}", "x")
            i += 1
    worker = threading.Thread(target=count)
    worker.start()
    try:
        for _ in range(2000):
            dict(rejections.counts.items())  # iterating a live dict here would raise
    finally:
        stop.set()
        worker.join()
    assert rejections.total == sum(rejections.counts.values()) > 0


def test_run_isolated_counts_by_type_and_names_the_item():
    log = ListLogger()
    rejections = Rejections(log)
    assert run_isolated(lambda x: None, 1, rejections, str)
    assert not run_isolated(lambda x: 1 / 0, 7, rejections, lambda x: f"item {x}")
    assert rejections.counts == {"internal_ZeroDivisionError": 1}
    assert log.lines[0].endswith("(item 7)")
