"""The server's batch scheduler without ROS: admission, round robin, batching, the one-by-one
fallback, hand-over, newest-frame slots and the output gates, on a real (tiny) model."""

import dataclasses
import threading
import time

import numpy as np
import pytest

from mtl_split_core.geometry import Intrinsics
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.latest_slot import LatestSlot
from mtl_split_core.runtime.rejections import Rejections
from mtl_split_core.runtime.scheduler import BatchScheduler, Pending, Stream, take_round_robin
from mtl_split_core.runtime.server import ServerRunner


class Log:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(text)


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, MultiTaskSplitNet(ModelConfig(
        name="tiny", backbone="mobilenetv3_small", input_size=(64, 48),
        bottlenecks={"s16": 4}, depth_reference_focal=100.0)).eval())
    edge = EdgeRunner.from_path(str(path), device="cpu")
    return edge, ServerRunner(edge.model, edge.card, device="cpu", score_threshold=0.0)


@pytest.fixture(scope="module")
def packets(runners):
    edge, _ = runners
    rng = np.random.default_rng(0)
    return [edge(rng.integers(0, 256, (48 + 8 * i, 64, 3), np.uint8)) for i in range(4)]


def _scheduler(runners, streams=3, **kwargs):
    log, dropped = Log(), []
    s = BatchScheduler(runners[1], [Stream(f"r{i}") for i in range(streams)],
                       Rejections(log), lambda tag: f"tag {tag}",
                       on_dropped=lambda stream, frame: dropped.append((stream.name, frame.tag)),
                       **kwargs)
    return s, log, dropped


def _delivered(s):
    got = []
    s.publish(lambda stream, done: got.append((stream.name, done.frame.tag, done.result)))
    return got


def test_round_robin_takes_one_frame_per_stream_and_rotates():
    """The newest frame of each stream, at most ``limit``, and with more streams waiting than
    that the next batch starts where this one stopped."""
    slots = [LatestSlot() for _ in range(5)]
    for i, slot in enumerate(slots):
        slot.put(f"old{i}")
        slot.put(f"new{i}")  # newest wins
    taken, following = take_round_robin(slots, 0, 3, set())
    assert taken == [(0, "new0"), (1, "new1"), (2, "new2")] and following == 3
    slots[0].put("next0")
    taken, following = take_round_robin(slots, following, 3, set())
    assert taken == [(3, "new3"), (4, "new4"), (0, "next0")] and following == 1
    assert take_round_robin(slots, following, 3, set()) == ([], 1)  # all empty: unchanged
    for i in (1, 2, 4):
        slots[i].put(f"x{i}")
    assert take_round_robin(slots, 3, 8, {4}) == ([(1, "x1"), (2, "x2")], 3)
    assert [s.dropped for s in slots] == [1] * 5


def test_admitted_frames_of_several_streams_run_as_one_batch(runners, packets):
    s, log, dropped = _scheduler(runners)
    k = [90.0, 0.0, 32.0, 0.0, 90.0, 24.0, 0.0, 0.0, 1.0]
    camera = Intrinsics(90.0, 90.0, 32.0, 24.0, *packets[0].source_size)
    for i, stream in enumerate(s.streams):
        assert s.admit(stream, packets[i], tag=i, received=time.perf_counter(),
                       camera_k=k if i == 0 else None) is not None
    s.work()
    assert s.batch_sizes.count == 1 and s.batch_sizes.mean == 3
    got = _delivered(s)
    assert [(name, tag) for name, tag, _ in got] == [("r0", 0), ("r1", 1), ("r2", 2)]
    # Each result knows where it came from: its camera and source size ride with the packet.
    assert got[0][2].camera == camera and got[1][2].camera is None
    assert got[1][2].source_size == packets[1].source_size
    # The same as the runner gives one frame at a time (the camera's focal scales depth).
    alone = runners[1](runners[1].admit(packets[0], k))
    np.testing.assert_allclose(got[0][2].depth, alone.depth, rtol=1e-4, atol=1e-5)
    assert not dropped and not log.lines


def test_max_batch_limits_a_batch_and_every_stream_gets_its_turn(runners, packets):
    s, _, _ = _scheduler(runners, streams=3, max_batch=2)
    for round_ in range(3):
        for i, stream in enumerate(s.streams):
            s.admit(stream, packets[i], tag=(round_, i), received=0.0)
        s.work()  # two of three streams
        s.work()  # the third (and nothing newer of the others: their slots are empty)
        assert sorted(tag for _, tag, _ in _delivered(s)) == [(round_, i) for i in range(3)]
    assert s.batch_sizes.count == 6


def test_a_newer_frame_replaces_the_waiting_one_and_the_old_one_is_reported(runners, packets):
    s, _, dropped = _scheduler(runners, streams=1)
    stream = s.streams[0]
    s.admit(stream, packets[0], tag="old", received=0.0)
    s.admit(stream, packets[1], tag="new", received=0.0)
    assert dropped == [("r0", "old")] and stream.slot.dropped == 1
    s.work()
    assert [tag for _, tag, _ in _delivered(s)] == ["new"]


def test_a_result_not_yet_published_is_replaced_and_reported(runners, packets):
    s, _, dropped = _scheduler(runners, streams=1)
    stream = s.streams[0]
    for tag in ("first", "second"):
        s.admit(stream, packets[0], tag=tag, received=0.0)
        s.work()
    assert dropped == [("r0", "first")] and stream.outbox.dropped == 1
    assert [tag for _, tag, _ in _delivered(s)] == ["second"]


def test_a_rejected_packet_is_counted_once_and_never_enters_the_slot(runners, packets):
    s, log, dropped = _scheduler(runners, streams=1)
    stream = s.streams[0]
    s.admit(stream, packets[0], tag="good", received=0.0)
    # A packet whose source size is out of bounds is rejected before its camera is built.
    bad_size = dataclasses.replace(packets[1], source_size=(0, 1))
    assert s.admit(stream, bad_size, tag="empty", received=0.0, camera_k=[9.0] * 9) is None
    wrong = dataclasses.replace(packets[1], model_fingerprint="someone else's")
    assert s.admit(stream, wrong, tag="bad", received=0.0) is None
    assert stream.rejected.as_dict() == {"fingerprint": 1, "source_size": 1}
    assert s.rejections.counts == {"fingerprint": 1, "source_size": 1}
    assert "tag empty" in log.lines[0] and "tag bad" in log.lines[1]
    s.work()
    assert [tag for _, tag, _ in _delivered(s)] == ["good"] and not dropped


class Unpacker:
    """A node's ``unpack`` stand-in: the "message" is (packet, camera K) or an exception to
    raise; counts what it unpacked."""

    def __init__(self):
        self.unpacked = []

    def __call__(self, message):
        self.unpacked.append(message)
        if isinstance(message, Exception):
            raise message
        return message


def test_arrived_messages_are_unpacked_only_when_taken_and_a_replaced_one_never(
        runners, packets):
    """Overload: a message replaced in the slot costs its arrival only (never unpacked,
    checked or decoded) and is reported dropped with its tag; the newest is admitted once."""
    unpack = Unpacker()
    s, log, dropped = _scheduler(runners, streams=2, unpack=unpack)
    first, second = s.streams
    for i in range(5):
        s.arrive(first, (packets[i % 4], None), tag=f"a{i}", received=float(i))
    s.arrive(second, (packets[1], [90.0, 0, 32, 0, 90.0, 24, 0, 0, 1]), tag="b",
             received=0.0)
    # a0 is kept as the fallback (in case a4 fails its checks); a1-a3 are dropped unchecked.
    assert not unpack.unpacked and dropped == [("r0", f"a{i}") for i in (1, 2, 3)]
    s.work()
    assert len(unpack.unpacked) == 2 and s.batch_sizes.mean == 2
    assert dropped[-1] == ("r0", "a0")  # a4 passed: the fallback is dropped when taken
    got = {name: (tag, result) for name, tag, result in _delivered(s)}
    assert got["r0"][0] == "a4" and got["r1"][0] == "b"
    assert got["r1"][1].camera is not None  # the unpacked camera K rides with the packet
    # The same result as an admitted packet (the same check and decoding, at take time).
    alone = runners[1](runners[1].admit(packets[0]))
    np.testing.assert_allclose(got["r0"][1].depth, alone.depth, rtol=1e-4, atol=1e-5)
    assert not log.lines and first.slot.dropped == 4


def test_a_bad_arrived_message_is_rejected_when_taken_and_costs_only_itself(runners, packets):
    """What ``admit`` refuses at arrival is refused at take time instead: counted by reason,
    logged with its tag, no result; a garbage payload fails its decoding there; an
    unexpected error in ``unpack`` is isolated. The other streams' frames run."""
    from mtl_split_core.runtime.packet import PacketRejected
    unpack = Unpacker()
    s, log, dropped = _scheduler(runners, streams=4, unpack=unpack)
    garbage = dataclasses.replace(packets[2], tensor=dataclasses.replace(
        packets[2].tensor, data=b"not zstd at all"))
    s.arrive(s.streams[0], (packets[0], None), tag="good", received=0.0)
    s.arrive(s.streams[1], PacketRejected("cdr", "not a message"), tag="cdr", received=0.0)
    s.arrive(s.streams[2], (garbage, None), tag="garbage", received=0.0)
    s.arrive(s.streams[3], RuntimeError("boom"), tag="boom", received=0.0)
    s.work()
    assert [tag for _, tag, _ in _delivered(s)] == ["good"] and s.batch_sizes.mean == 1
    counts = s.rejections.counts
    assert counts["cdr"] == 1 and counts["internal_RuntimeError"] == 1
    assert sum(counts.values()) == 3  # the garbage payload under its codec's reason
    assert s.streams[2].rejected.total == 1 and not dropped
    assert any("tag garbage" in line for line in log.lines)
    assert any("tag boom" in line for line in log.lines)
    s.arrive(s.streams[2], (packets[2], None), tag="next", received=0.0)  # the next one works
    s.work()
    assert [tag for _, tag, _ in _delivered(s)] == ["next"]


def test_undecodable_arrivals_never_displace_the_frame_waiting_in_the_slot(runners, packets):
    """A valid frame followed, before the worker takes it, by a burst of messages that fail
    their checks (garbage payloads, unknown codecs) still runs: the first one replaced is kept
    as the fallback, run when the newest is rejected. Nothing valid is counted dropped."""
    unpack = Unpacker()
    s, _, dropped = _scheduler(runners, streams=1, unpack=unpack)
    stream = s.streams[0]
    garbage = dataclasses.replace(packets[0], tensor=dataclasses.replace(
        packets[0].tensor, data=bytes(len(packets[0].tensor.data))))
    unknown = dataclasses.replace(packets[0], tensor=dataclasses.replace(
        packets[0].tensor, codec="q9-magic/1"))
    for round_, valid in enumerate((s.arrive, s.admit)):  # unchecked or checked on arrival
        if valid == s.arrive:
            s.arrive(stream, (packets[1], None), tag="valid", received=0.0)
        else:
            s.admit(stream, packets[1], tag="valid", received=0.0)
        for i in range(6):
            s.arrive(stream, ((garbage, unknown)[i % 2], None), tag=f"bad{i}", received=0.0)
        s.work()
        assert [tag for _, tag, _ in _delivered(s)] == ["valid"], round_
        assert stream.rejected.total == round_ + 1  # the newest; the fallback ran
    # The 5 bad ones between the valid frame and the newest were dropped unchecked.
    assert [tag for _, tag in dropped] == [f"bad{i}" for i in range(5)] * 2
    assert stream.slot.dropped == 10


def test_arrive_without_an_unpack_function_is_an_isolated_error(runners, packets):
    s, _, _ = _scheduler(runners, streams=1)
    s.arrive(s.streams[0], "raw", tag="t", received=0.0)
    s.work()
    assert s.rejections.counts == {"internal_TypeError": 1}


def test_a_batch_that_fails_is_run_one_by_one_and_costs_only_the_culprit(runners, packets):
    s, log, _ = _scheduler(runners)
    for i, stream in enumerate(s.streams):
        s.admit(stream, packets[i], tag=i, received=0.0)
    # A frame the network cannot run (its tensor lost a channel after admission): the batch
    # cannot be stacked, and the frame alone fails in the network.
    bad = s.streams[1].slot.take(timeout=0.0).newest
    broken = dataclasses.replace(bad.decoded, codes=bad.decoded.codes[:-1])
    s.streams[1].slot.put(Pending(dataclasses.replace(bad, decoded=broken)))
    s.work()
    assert sorted(tag for _, tag, _ in _delivered(s)) == [0, 2]
    assert sum(v for k, v in s.rejections.counts.items() if k.startswith("internal_")) == 1
    assert "tag 1" in log.lines[0]
    assert s.batch_sizes.count == 0  # no batch ran whole


def test_a_delivery_that_raises_costs_that_frame_only(runners, packets):
    s, log, _ = _scheduler(runners, streams=2)
    for i, stream in enumerate(s.streams):
        s.admit(stream, packets[i], tag=i, received=0.0)
    s.work()
    got = []

    def deliver(stream, done):
        if done.frame.tag == 0:
            raise RuntimeError("converter broke")
        got.append(done.frame.tag)

    s.publish(deliver)
    assert got == [1] and s.rejections.counts == {"internal_RuntimeError": 1}


def test_gates_keep_a_revoked_worker_and_a_closed_node_silent(runners, packets):
    s, _, _ = _scheduler(runners, streams=1)
    stream = s.streams[0]
    s.admit(stream, packets[0], tag="late", received=0.0)
    worker = threading.Thread(target=s.work)
    s.handover.revoke(worker)  # what the watchdog does to a stalled worker
    worker.start()
    worker.join()
    assert stream.outbox.waiting_s() == 0 and _delivered(s) == []
    s.admit(stream, packets[0], tag="after close", received=0.0)
    s.work()
    s.close_outputs()
    published = []
    s.publish(lambda st, done: s.gate.run(published.append, done))
    assert published == []


def test_waiting_times_feed_the_watchdog_and_close_wakes_the_worker(runners, packets):
    s, _, _ = _scheduler(runners, streams=2)
    assert s.input_waiting_s() == 0.0
    s.admit(s.streams[1], packets[0], tag=0, received=0.0)
    time.sleep(0.02)
    assert s.input_waiting_s() >= 0.02
    s.close_inputs()
    t0 = time.monotonic()
    s.work()
    s.work()  # nothing left, closed: returns at once
    assert time.monotonic() - t0 < 5.0


def test_streams_added_and_removed_at_run_time_are_served_from_the_next_step(runners, packets):
    """A pool server starts with no robot and learns them from the topics it discovers: a
    scheduler without streams idles, a stream added later is batched with the others, a
    removed one is no longer taken (its slot closed), and each batch is reported for the
    server's capacity."""
    batches = []
    s = BatchScheduler(runners[1], [], Rejections(Log()), str,
                       on_batch=lambda frames, busy_s: batches.append((frames, busy_s)))
    assert s.input_waiting_s() == s.output_waiting_s() == 0.0
    s.work()  # nothing to take: returns after the idle wait
    assert _delivered(s) == [] and not batches
    first, second = Stream("r0"), Stream("r1")
    s.add_stream(first)
    s.add_stream(first)  # once only
    s.admit(first, packets[0], tag="a0", received=0.0)
    s.work()
    assert [tag for _, tag, _ in _delivered(s)] == ["a0"]
    s.add_stream(second)
    for tag, stream in (("a1", first), ("b1", second)):
        s.admit(stream, packets[1], tag=tag, received=0.0)
    s.work()
    assert sorted(tag for _, tag, _ in _delivered(s)) == ["a1", "b1"]
    assert [f for f, _ in batches] == [1, 2] and all(b > 0 for _, b in batches)
    s.remove_stream(first)
    assert s.streams == [second] and first.slot.closed
    s.admit(second, packets[2], tag="b2", received=0.0)
    s.work()
    assert [tag for _, tag, _ in _delivered(s)] == ["b2"]
