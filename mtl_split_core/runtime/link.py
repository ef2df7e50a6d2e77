"""The edge's view of its link to the server, measured from the server's feedback.

The server answers every features message it finished (SERVED) or dropped from its
newest-frame slot (DROPPED) with a ``LinkFeedback`` that echoes the features' header stamp and
says how long the server held the message (``server_ms``). The edge looks its own send time up
by that stamp, so no clock is shared: the round trip is measured on the edge's clock alone,

    network RTT = (feedback received - features sent) - server_ms,

i.e. the features' way out (serialization of ``nbytes`` + propagation + retransmissions) plus
the small feedback's way back. From the frames answered within the last ``window_s`` seconds:

- ``goodput_bps``: bits of features the link delivered per second (SERVED and DROPPED: both
  crossed the link). It measures the sending rate as much as the link: it equals the link's
  capacity only while the link is the bottleneck (diagnostics).
- ``effective_bps``: the median over the newest ``recent`` answered frames of
  ``nbytes * 8 / network RTT``: what one frame's transfer achieved, whatever the sending rate
  (a probe every half second measures it as well as a full stream), and it follows a change
  within a few frames. A lower bound of the capacity: propagation is in the RTT (it weighs on
  small frames) and so is waiting behind the previous frame on a full link. This is the
  bandwidth estimate (``bandwidth_bps``) the controller uses.
- ``late_fraction``: of the frames sent since the last ``new_epoch`` (the edge starts one at
  every change of split, codec or mode) and within the window whose fate is known, the share
  that did *not* come back within ``late_ms`` of network round trip: answered late, or lost (a
  frame sent after it was answered). Frames after the newest answered one are not judged: they
  may still come, or the server is out of reach — silence, which is the fallback's business,
  not a narrow link. NaN while fewer than ``min_decided`` are known. A link that cannot carry
  the offered stream shows it here first: its queue delays or drops the frames, while the few
  that find the token bucket full cross at line rate and make ``effective_bps`` read high (the
  bench's 0.5 Mbit/s tbf link: 1.7-29 Mbit/s for 9 KB frames).
- ``offered_bps``: bits of features sent per second since the epoch (within the window): what
  the current configuration asks of the link.
- ``rtt_ms_p50``, ``nbytes_p50`` (of answered frames), ``server_ms_p50`` (of served ones: a
  drop's server time is only how long it waited).
- ``loss``: frames sent that got no feedback within ``timeout_s``, over all frames resolved in
  the window; server drops are counted apart (``server_drop_rate``): they crossed the link.
- ``fps_sent``, ``fps_acked`` (answered), ``fps_served``: frame rates; ``silent_s``: since
  the last feedback; ``unanswered_s``: since the first frame sent after the last feedback (0
  when every frame sent since then was answered): the fallback's clock.

Memory is bounded whatever the caller does: a frame never answered is forgotten after
``timeout_s`` (counted as lost), at most ``max_pending`` frames wait for an answer and every
window holds at most ``max_events`` entries. Feedback for an unknown stamp, a second feedback
for one frame, one that arrives after the frame was given up (``late``) and one with a bad
status or server time are ignored and counted. Time is passed in (seconds, monotonic), so the
class is deterministic and testable; it is thread-safe (feedback arrives in a subscription
callback while the worker sends and a timer reads the statistics).
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

# LinkFeedback status constants (mtl_split_msgs/msg/LinkFeedback.msg). NEED_KEYFRAME (a temporal
# codec's delta refused for its lost reference) measures the link as a DROPPED frame does.
SERVED, DROPPED, NEED_KEYFRAME = 0, 1, 2
MIN_RTT_MS = 0.05       # floor of one frame's network RTT: a clock tick must not give inf bit/s


@dataclass(frozen=True)
class LinkStats:
    """The link over the last ``window_s`` seconds (NaN = no answered frame in the window)."""

    window_s: float
    goodput_bps: float
    effective_bps: float
    rtt_ms_p50: float
    server_ms_p50: float
    nbytes_p50: float
    loss: float
    server_drop_rate: float
    fps_sent: float
    fps_acked: float      # frames answered (served or dropped) per second
    fps_served: float
    silent_s: float       # since the last feedback; inf before the first one
    unanswered_s: float   # since the first frame sent after the last feedback; 0 if none
    pending: int          # frames waiting for feedback
    counts: dict[str, int] = field(default_factory=dict)  # lifetime counts by event
    late_fraction: float = math.nan  # since the epoch: share not answered within late_ms
    offered_bps: float = math.nan    # since the epoch: bits sent per second
    last_rtt_ms: float = math.nan    # network RTT of the newest answer in the window

    @property
    def answered(self) -> bool:
        """Whether any frame was answered within the window (the link numbers are known)."""
        return not math.isnan(self.rtt_ms_p50)

    def bandwidth_bps(self) -> float:
        """The link capacity estimate (``effective_bps``, module docstring); NaN when nothing
        was answered in the window."""
        return self.effective_bps


@dataclass(frozen=True)
class _Answer:
    t: float
    nbytes: int
    rtt_ms: float
    server_ms: float
    served: bool


class LinkMonitor:
    """Edge-side link measurement from server feedback (module docstring)."""

    def __init__(self, window_s: float = 2.0, timeout_s: float = 2.0, max_pending: int = 1024,
                 max_events: int = 4096, recent: int = 8, late_ms: float = 100.0,
                 min_decided: int = 8) -> None:
        if not (window_s > 0 and timeout_s > 0 and max_pending >= 1 and max_events >= 1
                and recent >= 1 and 0 < late_ms <= timeout_s * 1e3 and min_decided >= 1):
            raise ValueError(f"need window_s > 0, timeout_s > 0, max_pending >= 1, "
                             f"max_events >= 1, recent >= 1, 0 < late_ms <= timeout_s, "
                             f"min_decided >= 1; got {window_s}, {timeout_s}, {max_pending}, "
                             f"{max_events}, {recent}, {late_ms}, {min_decided}")
        self.window_s, self.timeout_s = float(window_s), float(timeout_s)
        self.recent = int(recent)
        self.late_ms, self.min_decided = float(late_ms), int(min_decided)
        self.max_pending = int(max_pending)
        self._lock = threading.Lock()
        # stamp -> (send time, nbytes), in send order: the oldest expire first.
        self._pending: OrderedDict[int, tuple[float, int]] = OrderedDict()
        # Stamps given up or answered recently -> (when, network RTT in ms: inf if given up):
        # tells duplicates and late answers from unknown stamps, and the fate of a frame sent.
        self._resolved: OrderedDict[int, tuple[float, float]] = OrderedDict()
        self._max_resolved = int(max_events)
        self._sent: deque[tuple[float, int, int]] = deque(maxlen=max_events)  # t, stamp, bytes
        self._answers: deque[_Answer] = deque(maxlen=max_events)
        self._lost: deque[float] = deque(maxlen=max_events)
        self._counts: dict[str, int] = {}
        self._first_t: float | None = None
        self._last_feedback_t: float | None = None
        self._unanswered_since: float | None = None
        self._epoch = -math.inf          # late_fraction and offered_bps count sends from here
        self._stale_before = -math.inf   # answers for frames sent earlier are not measurements

    # ---------------------------------------------------------------------------- recording
    def sent(self, stamp_ns: int, nbytes: int, now: float) -> None:
        """A features message with header stamp ``stamp_ns`` and ``nbytes`` of payload left
        the edge at ``now``."""
        stamp, now = int(stamp_ns), float(now)
        with self._lock:
            self._expire(now)
            if self._first_t is None:
                self._first_t = now
            if stamp in self._pending:  # a camera that repeats stamps: the newest send counts
                self._count("stamp_reused")
                del self._pending[stamp]
            self._pending[stamp] = (now, max(0, int(nbytes)))
            while len(self._pending) > self.max_pending:
                old, _ = self._pending.popitem(last=False)
                self._give_up(old, now)
            self._sent.append((now, stamp, max(0, int(nbytes))))
            self._count("sent")
            if self._unanswered_since is None:
                self._unanswered_since = now

    def feedback(self, stamp_ns: int, status: int, server_ms: float, now: float) -> str:
        """The server's answer for stamp ``stamp_ns`` arrived at ``now``. Returns what it was:
        'served', 'dropped', or why it was ignored ('unknown', 'duplicate', 'late',
        'bad_status', 'bad_server_ms'); each is counted."""
        stamp, now = int(stamp_ns), float(now)
        with self._lock:
            self._expire(now)
            verdict = self._feedback(stamp, status, server_ms, now)
            self._count(verdict)
            return verdict

    def _feedback(self, stamp: int, status: int, server_ms: float, now: float) -> str:
        if status not in (SERVED, DROPPED, NEED_KEYFRAME):
            return "bad_status"
        server_ms = float(server_ms)
        if not (math.isfinite(server_ms) and 0.0 <= server_ms <= self.timeout_s * 1e3):
            return "bad_server_ms"
        entry = self._pending.pop(stamp, None)
        if entry is None:
            resolved = self._resolved.get(stamp)
            return "unknown" if resolved is None else (
                "duplicate" if math.isfinite(resolved[1]) else "late")
        sent_t, nbytes = entry
        # The server's duration is measured on its clock and the round trip on ours; rates
        # agree closely, so a negative difference is rounding: floor it.
        rtt_ms = max((now - sent_t) * 1e3 - server_ms, MIN_RTT_MS)
        self._remember(stamp, now, rtt_ms)
        if sent_t >= self._stale_before:  # (a frame that waited out an outage measures that)
            self._answers.append(_Answer(now, nbytes, rtt_ms, server_ms, status == SERVED))
        self._last_feedback_t = now
        self._unanswered_since = None
        # Frames sent after this one and still waiting restart the silence clock at their
        # send time (the oldest of them).
        for send_t, _ in self._pending.values():
            if send_t > sent_t:
                self._unanswered_since = send_t
                break
        return "served" if status == SERVED else "dropped"

    # ---------------------------------------------------------------------------- bookkeeping
    def _count(self, name: str) -> None:
        self._counts[name] = self._counts.get(name, 0) + 1

    def _remember(self, stamp: int, now: float, rtt_ms: float) -> None:
        self._resolved[stamp] = (now, rtt_ms)
        self._resolved.move_to_end(stamp)
        while len(self._resolved) > self._max_resolved:
            self._resolved.popitem(last=False)

    def _give_up(self, stamp: int, now: float) -> None:
        self._lost.append(now)
        self._count("lost")
        self._remember(stamp, now, math.inf)

    def _expire(self, now: float) -> None:
        """Give up frames older than the timeout; forget what left every window."""
        while self._pending:
            stamp, (sent_t, _) = next(iter(self._pending.items()))
            if sent_t > now - self.timeout_s:
                break
            del self._pending[stamp]
            self._give_up(stamp, now)
        horizon = now - self.window_s
        while self._sent and self._sent[0][0] < horizon:
            self._sent.popleft()
        while self._lost and self._lost[0] < horizon:
            self._lost.popleft()
        while self._answers and self._answers[0].t < horizon:
            self._answers.popleft()
        while self._resolved:
            _, (t, _) = next(iter(self._resolved.items()))
            if t >= now - 2 * self.timeout_s:
                break
            self._resolved.popitem(last=False)

    # ---------------------------------------------------------------------------- reading
    def stats(self, now: float) -> LinkStats:
        """The statistics over the window ending at ``now``."""
        now = float(now)
        with self._lock:
            self._expire(now)
            answers = list(self._answers)
            span = self.window_s if self._first_t is None else \
                min(self.window_s, max(now - self._first_t, 1e-3))
            served = [a for a in answers if a.served]
            resolved = len(answers) + len(self._lost)
            silent = math.inf if self._last_feedback_t is None else now - self._last_feedback_t
            unanswered = 0.0 if self._unanswered_since is None else now - self._unanswered_since
            late_fraction, offered_bps = self._since_epoch(now)
            return LinkStats(
                window_s=self.window_s,
                goodput_bps=sum(a.nbytes for a in answers) * 8 / span,
                effective_bps=_median([a.nbytes * 8e3 / a.rtt_ms
                                       for a in answers[-self.recent:]]),
                rtt_ms_p50=_median([a.rtt_ms for a in answers]),
                server_ms_p50=_median([a.server_ms for a in served]),
                nbytes_p50=_median([a.nbytes for a in answers]),
                loss=len(self._lost) / resolved if resolved else 0.0,
                server_drop_rate=(len(answers) - len(served)) / len(answers) if answers else 0.0,
                fps_sent=len(self._sent) / span, fps_acked=len(answers) / span,
                fps_served=len(served) / span,
                silent_s=silent, unanswered_s=max(unanswered, 0.0),
                pending=len(self._pending), counts=dict(sorted(self._counts.items())),
                late_fraction=late_fraction, offered_bps=offered_bps,
                last_rtt_ms=answers[-1].rtt_ms if answers else math.nan)

    def unanswered_s(self, now: float) -> float:
        """``stats(now).unanswered_s`` alone (the fallback's question per frame)."""
        with self._lock:
            since = self._unanswered_since
        return 0.0 if since is None else max(float(now) - since, 0.0)

    def _since_epoch(self, now: float) -> tuple[float, float]:
        """(late_fraction, offered_bps) over the frames sent since the epoch, in the window."""
        start = max(self._epoch, now - self.window_s,
                    now if self._first_t is None else self._first_t)
        sends = [s for s in self._sent if s[0] >= start]
        offered = sum(nbytes for _, _, nbytes in sends) * 8 / max(now - start, 1e-3)
        rtts = []  # (send time, network RTT in ms: inf = not answered (yet))
        for sent_t, stamp, _ in sends:
            fate = self._resolved.get(stamp)
            answered = fate is not None and fate[0] >= sent_t and math.isfinite(fate[1])
            rtts.append((sent_t, fate[1] if answered and fate is not None else math.inf))
        # A frame not answered counts once a frame sent after it was (answers keep the order
        # of the features): then it is lost. The frames after the newest answered one may
        # still come, or the server is out of reach: that is silence, the fallback's business.
        newest = max((t for t, rtt in rtts if math.isfinite(rtt)), default=-math.inf)
        decided = [rtt for t, rtt in rtts if t <= newest]
        late = sum(rtt > self.late_ms for rtt in decided)
        fraction = late / len(decided) if len(decided) >= self.min_decided else math.nan
        return fraction, offered

    def new_epoch(self, now: float) -> None:
        """The edge changed what it sends (split, codec, REMOTE/LOCAL): ``late_fraction`` and
        ``offered_bps`` judge only frames sent from ``now`` on."""
        with self._lock:
            self._epoch = float(now)

    def forget(self, stale_before: float | None = None) -> None:
        """Drop the window's measurements (an outage made them stale); counts, frames waiting
        for an answer and the silence clock stay. With ``stale_before``, answers for frames
        sent before that time will not be measurements either (they waited out the outage in
        a queue: their round trip measures it, not the link); they still resolve their frame."""
        with self._lock:
            self._sent.clear()
            self._answers.clear()
            self._lost.clear()
            if stale_before is not None:
                self._stale_before = float(stale_before)

    def abandon_pending(self, now: float) -> None:
        """The edge moved to another server: frames waiting for the old one's answer are no
        longer waited for (a late answer counts as ``late``, not as a measurement) and the
        silence clock stops."""
        with self._lock:
            for stamp in self._pending:
                self._remember(stamp, float(now), math.inf)
            self._pending.clear()
            self._unanswered_since = None

    def memory(self) -> int:
        """Entries held (pending + remembered + window events): bounded, see the docstring."""
        with self._lock:
            return (len(self._pending) + len(self._resolved) + len(self._sent)
                    + len(self._answers) + len(self._lost))


def _median(values: list[float] | list[int]) -> float:
    return float(statistics.median(values)) if values else math.nan
