"""The newest-frame slot: its waiting time (the watchdog's input) and its drops."""

from mtl_split_core.runtime.latest_slot import LatestSlot


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def test_slot_waiting_time_and_recent_drops():
    clock = FakeClock()
    slot = LatestSlot(window_s=10.0, clock=clock)
    assert slot.waiting_s() == 0.0
    slot.put(1)
    clock.t += 2.0
    slot.put(2)  # replaces 1: input has still been waiting since the first put
    clock.t += 1.0
    assert slot.waiting_s() == 3.0
    assert slot.dropped == 1 and slot.recent_drops() == 1
    assert slot.take(timeout=0) == 2
    assert slot.waiting_s() == 0.0
    clock.t += 11.0
    assert slot.recent_drops() == 0 and slot.dropped == 1
