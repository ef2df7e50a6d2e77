"""The edge's view of the server pool: which server this robot sends its features to.

``PoolView`` takes the pool's announcements (``announce``) and this robot's own evidence —
frames sent (``sent``) and the server's answers to them (``answered``, from LinkFeedback) —
and, per camera frame, says where the features go (``choose``): a server, or None (no server
has room: the robot runs locally). Time is passed in (seconds, monotonic), so every decision
is deterministic and testable; thread-safe (announcements and answers arrive in callbacks
while the worker chooses).

Rules (docs/POOL.md):
- **Candidates** are servers whose announcements passed ``check_announcement``, were seen at
  least ``confirm_count`` times (an id that changes every message never becomes one), the
  newest within ``silence_s``; that serve the robot's model fingerprint (and split and codec);
  that do not refuse this robot; and that are not penalised for leaving it unanswered.
- **Room**: the server accepts new robots (or already serves this one) and its load plus this
  robot's demand fits its capacity (an unmeasured capacity: the server's ``accepting`` alone).
- **First choice** (and after a loss): among candidates with room, weighted rendezvous
  hashing by free capacity: deterministic per robot, a server with twice the free capacity
  gets twice the robots, and robots that lose their server together spread over the others
  instead of all landing on the single least-loaded one (and overloading it). The second
  ranked is the **standby**: the edge keeps a publisher to it, so a move finds it matched.
- **Loss** (a move at once, no hold): the server's announcements stopped for ``silence_s``;
  a frame sent to it is unanswered for ``answer_timeout_s`` (it is also penalised: no
  candidate for ``penalty_s``, doubling per repeat up to ``max_penalty_s``); it refuses this
  robot (it is over its capacity and chose this one to go); it no longer serves the model.
- **Rebalancing** (hysteresis): a healthy current server is left only for one whose load with
  this robot added is ``margin`` below the current one's, continuously for ``hold_s`` plus a
  per-robot share of ``spread_s`` (robots of one server do not all move in the same instant),
  and never sooner than ``hold_s`` after the last move. A server of unmeasured capacity
  counts as empty while it serves nobody (a restarted server measures only once it serves),
  as unknown (no move to it) once it serves someone until its capacity is announced.
- **Local** only when no candidate has room.

Memory is bounded: at most ``max_servers`` servers (a new id takes the place of a silent one,
else of the newest unconfirmed one, else it is ignored: confirmed servers are never pushed out
by new ids) and ``max_pending`` frames waiting for an answer.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

from mtl_split_core.runtime.adaptive import Event
from mtl_split_core.runtime.pool_announcement import (
    Announcement,
    AnnouncementRejected,
    check_announcement,
)


@dataclass(frozen=True)
class PoolChoice:
    """Where this frame's features go."""

    server: str | None         # None: no server has room, run locally
    input_topic: str | None    # the topic to publish on (None with server None)
    standby: str | None        # the next choice: keep a publisher to it matched
    standby_topic: str | None
    # Changes of server since the last frame: the edge's ``Event`` with kind 'join' (a server
    # after none), 'move' (another server) or 'local' (no server has room); before/after are
    # server ids or 'local'.
    events: tuple[Event, ...]


class _Server:
    """What the view knows of one server id."""

    def __init__(self, ann: Announcement, now: float) -> None:
        self.ann = ann
        self.first_t = self.last_t = now
        self.count = 1
        self.strikes = 0                     # unanswered episodes since it last answered
        self.penalty_until = -math.inf
        self.unanswered_since: float | None = None  # first send after its last answer

    def confirmed(self, confirm_count: int) -> bool:
        return self.count >= confirm_count


class PoolView:
    """This robot's choice of server (module docstring)."""

    def __init__(self, robot: str, fingerprint: str, demand_fps: float = 30.0,
                 silence_s: float = 0.6, answer_timeout_s: float = 0.5,
                 confirm_count: int = 2, max_servers: int = 64, penalty_s: float = 5.0,
                 max_penalty_s: float = 120.0, margin: float = 0.15, hold_s: float = 2.0,
                 spread_s: float = 2.0, forget_s: float = 30.0, max_pending: int = 1024
                 ) -> None:
        if not (0 < silence_s <= 60 and 0 < answer_timeout_s <= 60 and 1 <= confirm_count
                <= 100 and 1 <= max_servers <= 4096 and 0 <= penalty_s <= max_penalty_s
                and 0 <= margin < 1 and 0 <= hold_s and 0 <= spread_s and silence_s
                <= forget_s and max_pending >= 1 and math.isfinite(demand_fps)
                and demand_fps >= 0):
            raise ValueError("PoolView: parameter out of range (see its signature)")
        self.robot, self.fingerprint = robot, fingerprint
        self.demand_fps = float(demand_fps)
        self.silence_s, self.answer_timeout_s = float(silence_s), float(answer_timeout_s)
        self.confirm_count, self.max_servers = int(confirm_count), int(max_servers)
        self.penalty_s, self.max_penalty_s = float(penalty_s), float(max_penalty_s)
        self.margin, self.hold_s, self.spread_s = float(margin), float(hold_s), float(spread_s)
        self.forget_s, self.max_pending = float(forget_s), int(max_pending)
        self.split: int | None = None   # what the robot sends now (set_stream)
        self.codec: str | None = None
        self._servers: dict[str, _Server] = {}
        self._pending: OrderedDict[int, tuple[str, float]] = OrderedDict()  # stamp -> server, t
        self._lock = threading.Lock()
        self.current: str | None = None
        self._since = -math.inf            # when the current choice was made
        self._better_since: float | None = None
        self.last_event: Event | None = None
        self.counts: dict[str, int] = {}
        # This robot's own share of every rebalance hold, in [0, spread_s).
        self._jitter = _unit(f"{robot}|rebalance") * self.spread_s

    # ------------------------------------------------------------------------- inputs
    def set_stream(self, split: int | None, codec: str | None, demand_fps: float | None = None
                   ) -> None:
        """The split and codec the robot sends now (a server must accept them) and its frame
        rate (its demand on a server's capacity)."""
        with self._lock:
            self.split, self.codec = split, codec
            if demand_fps is not None and math.isfinite(demand_fps) and demand_fps >= 0:
                self.demand_fps = float(demand_fps)

    def announce(self, ann: Announcement, now: float) -> str:
        """One announcement received at ``now``. Returns 'accepted' or why it was ignored
        (also counted as ``announce_<verdict>``): the bounds' reason, 'old_sequence',
        'input_taken' (another server announces that input topic) or 'pool_full'."""
        with self._lock:
            try:
                check_announcement(ann)
                verdict = self._announce(ann, float(now))
            except AnnouncementRejected as err:
                verdict = f"bad_{err.reason}"
            self._count(f"announce_{verdict}")
            return verdict

    def _announce(self, ann: Announcement, now: float) -> str:
        known = self._servers.get(ann.server_id)
        if known is not None:
            # A server silent for a while may come back as a new process (its sequence
            # restarts from the wall clock, normally larger); a live one only counts up.
            if ann.sequence <= known.ann.sequence and now - known.last_t < self.silence_s:
                return "old_sequence"
            if ann.input_topic != known.ann.input_topic and self._taken(ann, now):
                return "input_taken"
            known.ann, known.last_t = ann, now
            known.count = min(known.count + 1, 1 << 30)
            return "accepted"
        if self._taken(ann, now):
            return "input_taken"
        if len(self._servers) >= self.max_servers and not self._make_room(now):
            return "pool_full"
        self._servers[ann.server_id] = _Server(ann, now)
        return "accepted"

    def _taken(self, ann: Announcement, now: float) -> bool:
        """Whether another live, confirmed server announces ``ann``'s input topic."""
        return any(s.ann.input_topic == ann.input_topic and sid != ann.server_id
                   and s.confirmed(self.confirm_count) and now - s.last_t < self.silence_s
                   for sid, s in self._servers.items())

    def _make_room(self, now: float) -> bool:
        """Forget a silent server (the oldest), else the newest unconfirmed one; False when
        every place holds a live confirmed server (a new id then waits)."""
        silent = [(s.last_t, sid) for sid, s in self._servers.items()
                  if now - s.last_t >= self.silence_s and sid != self.current]
        unconfirmed = [(-s.first_t, sid) for sid, s in self._servers.items()
                       if not s.confirmed(self.confirm_count)]
        victim = min(silent)[1] if silent else (min(unconfirmed)[1] if unconfirmed else None)
        if victim is None:
            return False
        del self._servers[victim]
        return True

    def sent(self, stamp_ns: int, now: float) -> None:
        """A features message stamped ``stamp_ns`` went to the current server at ``now``."""
        with self._lock:
            server = self._servers.get(self.current or "")
            if server is None:
                return
            self._pending[int(stamp_ns)] = (server.ann.server_id, float(now))
            self._pending.move_to_end(int(stamp_ns))
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
            if server.unanswered_since is None:
                server.unanswered_since = float(now)

    def answered(self, stamp_ns: int, now: float) -> str | None:
        """The server answered the frame stamped ``stamp_ns`` (LinkFeedback, any status).
        Returns the server it was sent to, None for an unknown stamp."""
        with self._lock:
            entry = self._pending.pop(int(stamp_ns), None)
            if entry is None:
                self._count("answer_unknown")
                return None
            server = self._servers.get(entry[0])
            if server is not None:
                server.strikes, server.penalty_until = 0, -math.inf
                # Frames sent after this one and still waiting restart its clock.
                server.unanswered_since = next(
                    (t for sid, t in self._pending.values()
                     if sid == entry[0] and t > entry[1]), None)
            return entry[0]

    # ------------------------------------------------------------------------- the choice
    def choose(self, now: float) -> PoolChoice:
        """Where the features of a frame at ``now`` go (module docstring)."""
        now = float(now)
        with self._lock:
            self._forget(now)
            events: list[Event] = []
            before = self.current
            reason = self._lost(before, now) if before is not None else None
            if before is None or reason is not None:
                ranked = self._ranked(now, exclude=before)
                after = ranked[0] if ranked else None
                if after != before or reason is not None:
                    events += self._go(now, after, reason or "a server with room")
            else:
                events += self._rebalance(now)
            standby = next(iter(self._ranked(now, exclude=self.current)), None)
            return PoolChoice(self.current, self._topic(self.current), standby,
                              self._topic(standby), tuple(events))

    def _lost(self, server_id: str, now: float) -> str | None:
        """Why the current server must be left now, or None."""
        server = self._servers.get(server_id)
        if server is None:
            return "forgotten"
        if now - server.last_t >= self.silence_s:
            return f"silent for {now - server.last_t:.2f} s"
        waited = 0.0 if server.unanswered_since is None else now - server.unanswered_since
        if waited >= self.answer_timeout_s:
            self._penalise(server, now)
            return f"no answer for {waited:.2f} s"
        if now < server.penalty_until:
            return "penalised"
        refusal = server.ann.refusal_for(self.robot)
        if refusal is not None:
            return f"refused: {refusal}"
        if not server.ann.serves(self.fingerprint, self.split, self.codec):
            return "does not serve this model, split or codec"
        return None

    def _penalise(self, server: _Server, now: float) -> None:
        penalty = min(self.penalty_s * 2 ** min(server.strikes, 30), self.max_penalty_s)
        server.penalty_until, server.strikes = now + penalty, server.strikes + 1
        server.unanswered_since = None
        for stamp in [k for k, (sid, _) in self._pending.items() if sid == server.ann.server_id]:
            del self._pending[stamp]
        self._count("penalties")

    def _candidate(self, server: _Server, now: float) -> bool:
        ann = server.ann
        return (server.confirmed(self.confirm_count) and now - server.last_t < self.silence_s
                and now >= server.penalty_until and ann.refusal_for(self.robot) is None
                and ann.serves(self.fingerprint, self.split, self.codec))

    def _load_with_me(self, ann: Announcement) -> float:
        """The server's load with this robot's demand on it (counted once)."""
        return ann.load_fps + (0.0 if self.robot in ann.robots else self.demand_fps)

    def _has_room(self, ann: Announcement) -> bool:
        if self.robot not in ann.robots and not ann.accepting:
            return False
        return ann.capacity_fps <= 0 or self._load_with_me(ann) <= ann.capacity_fps

    def _free(self, ann: Announcement) -> float:
        """Free capacity fraction with this robot on it; 0.5 when the capacity is unknown."""
        if ann.capacity_fps <= 0:
            return 0.5
        return max(1.0 - self._load_with_me(ann) / ann.capacity_fps, 1e-3)

    def _use_with_me(self, ann: Announcement) -> float | None:
        """Its utilisation with this robot on it. A server of unmeasured capacity counts as
        empty while it serves nobody (it measures its capacity only once it serves: a
        restarted server would otherwise never draw a robot from a healthy one), else it is
        unknown (None): no rebalancing to it until measured."""
        if ann.capacity_fps > 0:
            return self._load_with_me(ann) / ann.capacity_fps
        return 0.0 if not ann.robots and ann.load_fps <= 0 else None

    def _ranked(self, now: float, exclude: str | None) -> list[str]:
        """Candidates with room, best first: weighted rendezvous by free capacity."""
        scored = []
        for sid, server in self._servers.items():
            if sid == exclude or not self._candidate(server, now) \
                    or not self._has_room(server.ann):
                continue
            u = _unit(f"{self.robot}|{sid}")
            scored.append((self._free(server.ann) / -math.log(u), sid))
        return [sid for _, sid in sorted(scored, reverse=True)]

    def _rebalance(self, now: float) -> list[Event]:
        """Leave a healthy server only for a clearly less loaded one (module docstring)."""
        current = self._servers[self.current or ""].ann
        if current.capacity_fps <= 0:
            self._better_since = None
            return []
        mine = current.load_fps + (0.0 if self.robot in current.robots else self.demand_fps)
        here = mine / current.capacity_fps
        best: tuple[float, str] | None = None
        for sid, server in self._servers.items():
            ann = server.ann
            if sid == self.current or not self._candidate(server, now) \
                    or not self._has_room(ann):
                continue
            there = self._use_with_me(ann)
            if there is None:
                continue
            if there + self.margin < here and (best is None or there < best[0]):
                best = (there, sid)
        if best is None:
            self._better_since = None
            return []
        if self._better_since is None:
            self._better_since = now
        if (now - self._better_since < self.hold_s + self._jitter
                or now - self._since < self.hold_s):
            return []
        return self._go(now, best[1], f"load {here:.0%} here, {best[0]:.0%} there with this "
                        f"robot")

    def _go(self, now: float, after: str | None, reason: str) -> list[Event]:
        before, self.current = self.current, after
        self._since, self._better_since = now, None
        if after is not None:
            server = self._servers[after]
            server.unanswered_since = None  # its clock starts with the first frame sent to it
        kind = "local" if after is None else ("join" if before is None else "move")
        if before is None and after is None:
            return []
        self._count(kind)
        event = Event(now, kind, before or "local", after or "local", reason)
        self.last_event = event
        return [event]

    def _forget(self, now: float) -> None:
        """Drop servers silent for ``forget_s`` and frames waiting longer than that."""
        for sid in [sid for sid, s in self._servers.items()
                    if now - s.last_t >= self.forget_s and sid != self.current]:
            del self._servers[sid]
        while self._pending and next(iter(self._pending.values()))[1] < now - self.forget_s:
            self._pending.popitem(last=False)

    def _topic(self, server_id: str | None) -> str | None:
        server = self._servers.get(server_id or "")
        return None if server is None else server.ann.input_for(self.robot)

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    # ------------------------------------------------------------------------- reading
    def servers(self, now: float) -> list[tuple[Announcement, float, bool]]:
        """Every server known: (its newest announcement, seconds since, candidate now)."""
        with self._lock:
            return [(s.ann, now - s.last_t, self._candidate(s, now))
                    for s in self._servers.values()]

    def memory(self) -> int:
        """Entries held (servers + frames waiting for an answer): bounded."""
        with self._lock:
            return len(self._servers) + len(self._pending)

    def values(self, now: float) -> dict[str, object]:
        """The /diagnostics key/values (docs/POOL.md)."""
        with self._lock:
            candidates = sum(self._candidate(s, now) for s in self._servers.values())
            values: dict[str, object] = {
                "pool_server": self.current or "", "pool_candidates": candidates,
                "pool_servers_known": len(self._servers),
                "pool_moves": self.counts.get("move", 0),
                "pool_last_event": "" if self.last_event is None else str(self.last_event)}
            values.update({f"pool_{k}": v for k, v in sorted(self.counts.items())
                           if k not in ("move",)})
            return values


def _unit(text: str) -> float:
    """A number in (0, 1) fixed by ``text`` (rendezvous hashing, per-robot jitter)."""
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return (digest + 0.5) / 2.0**64
