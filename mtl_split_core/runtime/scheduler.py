"""The server's batch scheduler: many input streams (one per robot), one network, fair batches.

Three threads meet here, and nothing else decides what runs when:
- **arrival** (a node's subscription callbacks) puts each message into its stream's
  newest-frame slot, one of two ways:
  ``arrive`` keeps the message as it came (``Arrived``): its checks and decoding wait until the
  worker takes it, so a message replaced in the slot (overload: more frames than the network
  serves) costs only its arrival, and the process keeps serving at its capacity however much
  more is offered (docs/BENCHMARKS.md, "Overload");
  ``admit`` checks and decodes the packet now (a stream whose every frame must be decoded in
  order, a temporal codec's, or whose sender must be verified before it may replace a valid
  frame, e.g. signed messages);
  either way ``_admit`` (``ServerRunner.admit``) is the one place a packet is checked and
  decoded, once. An unchecked message does not push out the frame it replaces: that one is
  kept as the slot's ``fallback`` (``Pending``), run instead when the newest fails its checks,
  so a burst of undecodable messages never displaces a valid frame waiting in the slot;
- **the inference worker** (``work``): takes the newest frame of up to ``max_batch`` streams
  (admitting those that ``arrive``d: a rejected one is counted and skipped),
  round robin from after the stream taken last (with more robots than ``max_batch`` every robot
  gets its turn), waits up to ``batch_wait_ms`` for more once one is there, runs them as one
  batch (``ServerRunner.run_batch``) and hands each result over to its stream's outbox; a batch
  that raises is run again one frame at a time, so only the culprit is lost (and counted);
- **the publisher** (``publish``): takes the newest result of each stream and hands it to the
  node's ``deliver``. Between worker and publisher each stream has a slot of depth one (newest
  wins, counted as the stream's ``publish_drops``), so a slow publish never stalls inference.

Streams may be added and removed at run time (``add_stream`` / ``remove_stream``: a pool
server learns its robots from the topics it discovers, docs/POOL.md): the list is replaced, never
changed in place, so each thread's step works on one consistent list.

Every frame replaced before it was run, and every result replaced before it was delivered, is
reported through ``on_dropped`` (the server answers it with a DROPPED link feedback). Two output
gates (runtime/output_gate.py) keep an abandoned worker's late results out and close the node's
outputs at shutdown. ROS-free: a frame carries the node's own record of its message as ``tag``
(``describe(tag)`` names it in log lines).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from numpy.typing import ArrayLike

from mtl_split_core.runtime.frame_views import NO_VIEWS, ViewRequest
from mtl_split_core.runtime.latest_slot import LatestSlot
from mtl_split_core.runtime.output_gate import OutputGate
from mtl_split_core.runtime.packet import FeaturePacket, PacketRejected
from mtl_split_core.runtime.rejections import Rejections, run_isolated
from mtl_split_core.runtime.server import DecodedPacket, ServerResult, ServerRunner
from mtl_split_core.runtime.stats import RECENT_S, Counters, RateMeter, RollingStats
from mtl_split_core.temporal_codec import TemporalDecoder

T = TypeVar("T")
IDLE_WAIT_S = 0.05  # how long a worker step waits for input before returning (watchdog checks)


@dataclass(frozen=True)
class Frame:
    """An admitted frame: its decoded packet, the node's record of the message it came in
    (``tag``), and ``time.perf_counter()`` when its admission began (where the feedback's
    server time and the receive -> publish delay start)."""

    decoded: DecodedPacket
    tag: Any
    received: float


@dataclass(frozen=True)
class Arrived:
    """A message kept as it arrived (``BatchScheduler.arrive``): ``message`` is unchecked, the
    node's ``unpack`` turns it into a packet when the worker takes it. ``tag`` and
    ``received`` as for ``Frame`` (what a DROPPED answer needs without the packet)."""

    message: Any
    tag: Any
    received: float


@dataclass(frozen=True)
class Pending:
    """What a stream's newest-frame slot holds: the newest item and, while that one is
    unchecked (``Arrived``), the item it replaced (the first replaced since the last take),
    run instead if the newest fails its checks."""

    newest: Frame | Arrived
    fallback: Frame | Arrived | None = None


def merge_pending(held: Pending, new: Pending) -> tuple[Pending, list[Frame | Arrived]]:
    """``LatestSlot.put_merged``'s rule for ``Pending`` items: a checked frame replaces all
    that is held; an unchecked one keeps the item it replaces as the fallback, unless there is
    one already (then the replaced newest is dropped). What to hold, what is dropped."""
    item, fallback = new.newest, held.fallback
    if isinstance(item, Frame):
        return new, [x for x in (fallback, held.newest) if x is not None]
    if fallback is None:
        return Pending(item, held.newest), []
    return Pending(item, fallback), [held.newest]


# What a node's ``unpack`` makes of an ``Arrived`` message: the packet and its camera's K
# (None = unknown); it raises PacketRejected for a message that is not one.
Unpacked = tuple[FeaturePacket, ArrayLike | None]


@dataclass(frozen=True)
class Finished:
    """A frame's result waiting for the publisher."""

    frame: Frame
    result: ServerResult
    started: float  # time.perf_counter() when its batch started


class Stream:
    """One input stream (a robot's feature topic): newest-frame slot, outbox and statistics."""

    def __init__(self, name: str, window_s: float = RECENT_S) -> None:
        self.name = name
        self.slot: LatestSlot[Pending] = LatestSlot(window_s=window_s)
        self.outbox: LatestSlot[Finished] = LatestSlot(window_s=window_s)
        self.rate = RateMeter()
        self.latency = RollingStats()      # batch start -> delivered
        self.delay = RollingStats()        # admitted (received) -> delivered
        self.rejected = Counters()         # this stream's rejected messages, by reason
        self.references = TemporalDecoder()  # a temporal codec's reference (temporal_codec.py)

    def views(self) -> ViewRequest:
        """What this stream's next results should carry beyond the result fields (made with
        the batch on the device, runtime/frame_views.py); a node asks its subscribers."""
        return NO_VIEWS

    def delivered(self, done: Finished) -> None:
        """Record ``done`` as delivered now."""
        now = time.perf_counter()
        self.latency.add((now - done.started) * 1e3)
        self.delay.add((now - done.frame.received) * 1e3)
        self.rate.tick()

    def values(self) -> dict[str, float | int]:
        """Diagnostics values of this stream."""
        return {"fps": self.rate.fps(), "server_ms_p50": self.latency.p50,
                "server_ms_p95": self.latency.p95,
                "server_ms_p99": self.latency.percentile(99.0),
                "receive_to_publish_ms_p50": self.delay.p50,
                "receive_to_publish_ms_p99": self.delay.percentile(99.0),
                "frames": self.latency.count, "drops": self.slot.dropped,
                "drops_recent": self.slot.recent_drops(), "publish_drops": self.outbox.dropped,
                "rejected": self.rejected.total}


def take_round_robin(slots: Sequence[LatestSlot[T]], first: int, limit: int, skip: set[int]
                     ) -> tuple[list[tuple[int, T]], int]:
    """Up to ``limit`` pending items, one per slot, looking at slots ``first``, ``first + 1``,
    ... (wrapping) and leaving the indices in ``skip``. Returns [(index, item)] and where the
    next look starts: after the last slot taken (``first`` when none was)."""
    taken: list[tuple[int, T]] = []
    following = first
    for k in range(len(slots)):
        if len(taken) >= limit:
            break
        i = (first + k) % len(slots)
        if i in skip:
            continue
        item = slots[i].take(timeout=0.0)
        if item is not None:
            taken.append((i, item))
            following = (i + 1) % len(slots)
    return taken, following


class BatchScheduler:
    """Admission, batching and hand-over between a node's threads (module docstring).

    ``max_batch`` and ``batch_wait_ms`` are plain attributes (a node may change them at run
    time: each worker step reads them once)."""

    def __init__(self, runner: ServerRunner, streams: Sequence[Stream], rejections: Rejections,
                 describe: Callable[[Any], str], *, max_batch: int = 8,
                 batch_wait_ms: float = 0.0,
                 on_dropped: Callable[[Stream, Frame | Arrived], None] | None = None,
                 on_rejected: Callable[[Stream, FeaturePacket, Any, PacketRejected], None]
                 | None = None,
                 on_batch: Callable[[int, float], None] | None = None,
                 unpack: Callable[[Any], Unpacked] | None = None) -> None:
        self.runner = runner
        self.streams: list[Stream] = list(streams)  # replaced whole (add/remove_stream)
        self.rejections = rejections
        self.describe = describe
        self.max_batch = int(max_batch)
        self.batch_wait_ms = float(batch_wait_ms)
        self.on_dropped = on_dropped or (lambda stream, frame: None)
        # (stream, packet, tag, why) of a packet ``admit`` rejected (e.g. a keyframe request).
        self.on_rejected = on_rejected or (lambda stream, packet, tag, err: None)
        # (frames, seconds from the batch's start to its results): a pool server's capacity.
        self.on_batch = on_batch or (lambda frames, busy_s: None)
        # An ``Arrived`` message -> (packet, camera K), in the worker (``arrive``).
        self.unpack = unpack or _no_unpack
        self._streams_lock = threading.Lock()  # between writers of the list (readers copy it)
        self.handover = OutputGate()   # the inference worker hands results over through it
        self.gate = OutputGate()       # the publisher delivers through it
        self.batch_sizes = RollingStats()
        self._arrived = threading.Event()   # set when a frame enters a slot
        self._finished = threading.Event()  # set when a result enters an outbox
        self._next = 0                      # where the next batch starts taking (fairness)

    def add_stream(self, stream: Stream) -> None:
        """Serve ``stream`` from the next worker step on (a robot found at run time)."""
        with self._streams_lock:
            if all(s is not stream for s in self.streams):
                self.streams = [*self.streams, stream]

    def remove_stream(self, stream: Stream) -> None:
        """Stop serving ``stream``: its waiting frame and result are dropped unanswered (its
        robot has gone) and its slots closed."""
        with self._streams_lock:
            self.streams = [s for s in self.streams if s is not stream]
        stream.slot.close()
        stream.outbox.close()

    # ------------------------------------------------------------------------- admission
    def admit(self, stream: Stream, packet: FeaturePacket, tag: Any, received: float,
              camera_k: ArrayLike | None = None) -> Frame | None:
        """Check and decode ``packet`` now (``_admit``) and keep it as ``stream``'s newest
        frame; a rejected one never enters the slot. The frame, or None."""
        frame = self._admit(stream, packet, tag, received, camera_k)
        if frame is not None:
            self._put(stream, frame)
        return frame

    def arrive(self, stream: Stream, message: Any, tag: Any, received: float) -> None:
        """Keep ``message`` unchecked as ``stream``'s newest frame: the worker unpacks, checks
        and decodes it (``unpack``, ``_admit``) only if it is still the newest when taken."""
        self._put(stream, Arrived(message, tag, received))

    def _put(self, stream: Stream, item: Frame | Arrived) -> None:
        dropped = stream.slot.put_merged(Pending(item), merge_pending)
        self._arrived.set()
        for old in dropped:
            self.on_dropped(stream, old)

    def _admit(self, stream: Stream, packet: FeaturePacket, tag: Any, received: float,
               camera_k: ArrayLike | None) -> Frame | None:
        """Check and decode ``packet`` (every check of the packet and its model match, once;
        with its camera's K, ``ServerRunner.admit``). A rejected packet is counted and logged
        and gets no feedback (it did not come from a well-behaved edge) beyond what
        ``on_rejected`` sends (a delta of a temporal codec whose reference was lost: a keyframe
        request). The frame, or None."""
        try:
            decoded = self.runner.admit(packet, camera_k, stream.references)
        except PacketRejected as err:
            self.reject(stream, err.reason, f"{stream.name} ({self.describe(tag)}): {err}")
            self.on_rejected(stream, packet, tag, err)
            return None
        return Frame(decoded, tag, received)

    def _ready(self, stream: Stream, frames: list[tuple[Stream, Frame]],
               pending: Pending) -> None:
        """Append a taken slot's frame to run to ``frames``: its newest item (admitted now if
        it ``arrive``d; rejected: counted) or, when that is rejected, its fallback; a fallback
        not needed is dropped (counted, ``on_dropped``)."""
        frame = self._frame(stream, pending.newest)
        fallback = pending.fallback
        if frame is None and fallback is not None:
            frame = self._frame(stream, fallback)
        elif fallback is not None:
            stream.slot.count_drop()
            self.on_dropped(stream, fallback)
        if frame is not None:
            frames.append((stream, frame))

    def _frame(self, stream: Stream, item: Frame | Arrived) -> Frame | None:
        """``item`` as a frame to run: an ``Arrived`` one unpacked and admitted now."""
        if isinstance(item, Frame):
            return item
        try:
            packet, camera_k = self.unpack(item.message)
        except PacketRejected as err:
            self.reject(stream, err.reason, f"{stream.name} ({self.describe(item.tag)}): {err}")
            return None
        return self._admit(stream, packet, item.tag, item.received, camera_k)

    def reject(self, stream: Stream, reason: str, detail: str) -> None:
        """Count a message of ``stream`` that cannot be served (also for checks a node runs
        before the packet exists, e.g. its signature)."""
        stream.rejected.inc(reason)
        self.rejections(reason, detail)

    # --------------------------------------------------------------- the inference worker
    def work(self) -> None:
        """One worker step: the newest frame of up to ``max_batch`` streams as one batch, the
        results handed over to the publisher. Returns after ``IDLE_WAIT_S`` without input."""
        taken = self.gather()
        if taken:
            self.run(taken, time.perf_counter())

    def gather(self) -> list[tuple[Stream, Frame]]:
        """The newest frame of up to ``max_batch`` streams (those that ``arrive``d admitted
        now, each isolated: a rejected one is counted and left out); once one is there, wait up
        to ``batch_wait_ms`` for more (0: take what is there). Empty after ``IDLE_WAIT_S``
        without input."""
        limit, wait_s = self.max_batch, self.batch_wait_ms / 1e3
        self._arrived.clear()  # before looking: a frame arriving after the look sets it
        taken = self._take(limit, set())
        if not taken:
            self._arrived.wait(IDLE_WAIT_S)
            return []
        deadline = time.monotonic() + wait_s
        while len(taken) < min(limit, len(self.streams)):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            more = self._take(limit - len(taken), {id(s) for s, _ in taken})
            if more:
                taken += more
            else:
                self._arrived.wait(left)
        return taken

    def _take(self, limit: int, skip: set[int]) -> list[tuple[Stream, Frame]]:
        """Round robin over one copy of the list; ``skip``: ids of streams already taken."""
        streams = self.streams
        if not streams:
            return []
        taken, self._next = take_round_robin(
            [s.slot for s in streams], self._next % len(streams), limit,
            {i for i, s in enumerate(streams) if id(s) in skip})
        frames: list[tuple[Stream, Frame]] = []
        for i, item in taken:
            run_isolated(partial(self._ready, streams[i], frames), item, self.rejections,
                         self._describe_item)
        return frames

    def run(self, taken: Sequence[tuple[Stream, Frame]], started: float) -> None:
        """Run ``taken`` as one batch and hand each result over; when the batch raises, run
        its frames one at a time, each isolated, so only the culprit is lost (and named)."""
        try:
            results = self.runner.run_batch([frame.decoded for _, frame in taken],
                                            views=[stream.views() for stream, _ in taken])
        except Exception:  # noqa: BLE001 - retried one by one below, each isolated and counted
            results = None
        if results is not None:
            self.batch_sizes.add(len(taken))
            self.on_batch(len(taken), time.perf_counter() - started)
            for (stream, frame), result in zip(taken, results):
                self._hand_over(stream, Finished(frame, result, started))
            return
        for stream, frame in taken:
            run_isolated(self._run_one(stream, started), frame, self.rejections,
                         self._describe_frame)

    def _run_one(self, stream: Stream, started: float) -> Callable[[Frame], None]:
        def run(frame: Frame) -> None:
            result = self.runner.run_batch([frame.decoded], views=[stream.views()])[0]
            self._hand_over(stream, Finished(frame, result, started))
        return run

    def _hand_over(self, stream: Stream, done: Finished) -> None:
        replaced: list[Finished | None] = []
        if self.handover.run(lambda d: replaced.append(stream.outbox.put(d)), done):
            self._finished.set()  # (not from an abandoned worker)
            if replaced[0] is not None:  # a result never delivered: its sender hears so
                self.gate.run(self.on_dropped, stream, replaced[0].frame)

    # ----------------------------------------------------------------------- the publisher
    def publish(self, deliver: Callable[[Stream, Finished], None]) -> None:
        """One publisher step: ``deliver(stream, finished)`` for the newest result of each
        stream, each isolated. Returns after ``IDLE_WAIT_S`` without results."""
        self._finished.clear()  # before looking: a result arriving after the look sets it
        busy = False
        for stream in self.streams:
            done = stream.outbox.take(timeout=0.0)
            if done is not None:
                busy = True
                run_isolated(partial(deliver, stream), done, self.rejections,
                             self._describe_finished)
        if not busy:
            self._finished.wait(IDLE_WAIT_S)

    # ---------------------------------------------------------------- watchdog, shutdown
    def input_waiting_s(self) -> float:
        """Seconds the oldest untaken frame has waited (the worker's watchdog)."""
        return max((s.slot.waiting_s() for s in self.streams), default=0.0)

    def output_waiting_s(self) -> float:
        """Seconds the oldest undelivered result has waited (the publisher's watchdog)."""
        return max((s.outbox.waiting_s() for s in self.streams), default=0.0)

    def values(self) -> dict[str, float | int]:
        """Diagnostics values of the batching."""
        return {"batch_size_mean": self.batch_sizes.mean, "batches": self.batch_sizes.count,
                "max_batch": self.max_batch}

    def close_inputs(self) -> None:
        """No more frames: wakes the worker (then stop it, then ``close_handover``)."""
        for s in self.streams:
            s.slot.close()
            s.outbox.close()

    def close_handover(self) -> None:
        self.handover.close()

    def close_outputs(self) -> None:
        self.gate.close()

    def _describe_frame(self, frame: Frame) -> str:
        return self.describe(frame.tag)

    def _describe_item(self, pending: Pending) -> str:
        return self.describe(pending.newest.tag)

    def _describe_finished(self, done: Finished) -> str:
        return self.describe(done.frame.tag)


def _no_unpack(message: Any) -> Unpacked:
    raise TypeError("BatchScheduler.arrive needs an unpack function (BatchScheduler(unpack=))")
