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


def test_put_merged_holds_what_the_merge_says_and_counts_what_it_drops():
    clock = FakeClock()
    slot = LatestSlot(window_s=10.0, clock=clock)

    def keep_first(held, item):  # (held items, dropped): the first and the newest stay
        first, last = held
        return (first, item[0]), [] if last is None else [last]

    assert slot.put_merged((1, None), keep_first) == []  # an empty slot takes the item
    clock.t += 1.0
    assert slot.put_merged((2, None), keep_first) == []
    assert slot.put_merged((3, None), keep_first) == [2]
    assert slot.dropped == 1 and slot.waiting_s() == 1.0  # waiting since the first put
    assert slot.take(timeout=0) == (1, 3)
    slot.count_drop()  # the caller dropped 1 after taking it
    assert slot.dropped == 2 and slot.recent_drops() == 2
