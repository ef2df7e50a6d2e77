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
- **Rebalancing** (toward the fair share, coordinated through the announcements): every
  robot of a server computes, from the same announcements, the pool's fair utilisation (the
  candidates' load over their capacity; a capacity not measured yet counts as the median of
  the measured ones, or all alike when none is) and how many robots' demand its server carries
  above its share (``k``: whole robots, ``margin`` of one robot for measurement noise). The
  ``k`` first of the server's robots in a fixed order (a hash of each name) leave, each for a
  server with room below its share (picked in proportion to those deficits): exactly the
  excess moves, not every robot that sees a less loaded server, so stale announcements cannot
  herd robots from one server to the other and a balanced pool (loads within one robot's
  demand) moves nobody. A robot listed by two servers counts on the one that listed it last
  (a server lists a robot that left for ``idle_s``). A robot leaves after it was among the
  ``k`` continuously for ``hold_s`` plus its own share of ``spread_s`` (hashed from its name:
  the movers do not arrive in one burst), never sooner than ``hold_s`` after its last move.
- **Local** only when no candidate has room.

Memory is bounded: at most ``max_servers`` servers (a new id takes the place of a silent one,
else of the newest unconfirmed one, else it is ignored: confirmed servers are never pushed out
by new ids) and ``max_pending`` frames waiting for an answer.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

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
        # When each robot it lists was first listed (a robot listed by two servers moved to
        # the one that listed it last; bounded: the announcement's MAX_ROBOTS).
        self.listed = dict.fromkeys(ann.robots, now)
        self.per_robot_fps: float | None = None  # its load per robot (_per_robot)
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
                 max_penalty_s: float = 120.0, margin: float = 0.25, hold_s: float = 2.0,
                 spread_s: float = 2.0, forget_s: float = 30.0, max_pending: int = 1024
                 ) -> None:
        if not (0 < silence_s <= 60 and 0 < answer_timeout_s <= 60 and 1 <= confirm_count
                <= 100 and 1 <= max_servers <= 4096 and 0 <= penalty_s <= max_penalty_s
                and 0 <= margin < 0.5 and 0 <= hold_s and 0 <= spread_s and silence_s
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
        self._plan_key: tuple | None = None     # what _plan was computed from
        self._plan: tuple[str, str] | None = None  # (server, reason): leave for it
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
            known.listed = {r: known.listed.get(r, now) for r in ann.robots}
            known.ann, known.last_t = ann, now
            known.count = min(known.count + 1, 1 << 30)
            self._per_robot(known)
            return "accepted"
        if self._taken(ann, now):
            return "input_taken"
        if len(self._servers) >= self.max_servers and not self._make_room(now):
            return "pool_full"
        self._servers[ann.server_id] = _Server(ann, now)
        self._per_robot(self._servers[ann.server_id])
        return "accepted"

    def _per_robot(self, server: _Server) -> None:
        """Its load per robot it lists, held while another server lists one of them later
        (a robot that left: its frames still count in the load for the server's rate
        window, so the average would read low and undercount the robots that stay)."""
        if not server.listed:
            server.per_robot_fps = None
            return
        others = [o for o in self._servers.values()
                  if o is not server and o.confirmed(self.confirm_count)]
        left = any(o.listed.get(r, -math.inf) > t for r, t in server.listed.items()
                   for o in others)
        if not left or server.per_robot_fps is None:
            server.per_robot_fps = server.ann.load_fps / len(server.listed)

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
        """Leave a healthy server when this robot is one of its excess (module docstring)."""
        peers = {sid: s for sid, s in self._servers.items()
                 if sid == self.current or self._candidate(s, now)}
        key = (self.current, self.demand_fps, self.margin,
               tuple((sid, s.ann.sequence) for sid, s in peers.items()))
        if key != self._plan_key:  # the plan changes with announcements only
            self._plan_key, self._plan = key, self._excess_move(peers)
        if self._plan is None:
            self._better_since = None
            return []
        if self._better_since is None:
            self._better_since = now
        if (now - self._better_since < self.hold_s + self._jitter
                or now - self._since < self.hold_s):
            return []
        return self._go(now, *self._plan)

    def _excess_move(self, peers: dict[str, _Server]) -> tuple[str, str] | None:
        """(server, reason) when this robot is one of the robots its server carries above
        the pool's fair share, else None (module docstring: every robot of the server
        computes the same count and order from the same announcements)."""
        here = self.current or ""
        members, loads = self._members(peers), {}
        for sid, s in peers.items():
            loads[sid] = (s.ann.load_fps if s.per_robot_fps is None
                          else s.per_robot_fps * len(members[sid]))
        if self.robot not in members[here]:  # not served there yet: its demand on top
            members[here].append(self.robot)
            loads[here] += self.demand_fps
        # One robot: its server's average (every robot of it counts the same), else its own.
        unit = peers[here].per_robot_fps or self.demand_fps or loads[here] / len(members[here])
        if unit <= 0:
            return None
        weights = _weights(peers)
        fair = sum(loads.values()) / sum(weights.values())   # load per unit of capacity
        over = math.floor((loads[here] - fair * weights[here]) / unit + self.margin)
        if over < 1:
            return None
        slots = {sid: math.floor((fair * weights[sid] - loads[sid]) / unit + self.margin)
                 for sid, s in sorted(peers.items()) if sid != here and self._has_room(s.ann)}
        slots = {sid: n for sid, n in slots.items() if n >= 1}
        over = min(over, sum(slots.values()))
        rank = sorted(members[here], key=_leave_rank).index(self.robot)
        if rank >= over:
            return None
        # The movers of every over-loaded server fill the deficits in proportion.
        x = (rank + 0.5) / over * sum(slots.values())
        target = next(sid for sid, n in _cumulative(slots) if x < n)
        return target, (f"{over} robot(s) over the fair share here: load "
                        f"{loads[here]:.0f} frames/s here (share {fair * weights[here]:.0f}), "
                        f"{loads[target]:.0f} at {target} (share "
                        f"{fair * weights[target]:.0f})")

    def _members(self, peers: dict[str, _Server]) -> dict[str, list[str]]:
        """The robots each server serves: a robot listed by several counts on the one that
        listed it last (the others list it until their ``idle_s``), this one on its own."""
        last: dict[str, float] = {}
        for s in peers.values():
            for robot, t in s.listed.items():
                last[robot] = max(last.get(robot, -math.inf), t)
        return {sid: [r for r, t in s.listed.items() if t >= last[r]
                      and (r != self.robot or sid == self.current)]
                for sid, s in peers.items()}

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


def _weights(peers: dict[str, _Server]) -> dict[str, float]:
    """Capacity per server; one not measured yet counts as the median measured one (a
    restarted server measures only once it serves), all alike when none is."""
    known = [s.ann.capacity_fps for s in peers.values() if s.ann.capacity_fps > 0]
    fill = statistics.median(known) if known else 1.0
    return {sid: s.ann.capacity_fps if s.ann.capacity_fps > 0 else fill
            for sid, s in peers.items()}


def _cumulative(counts: dict[str, int]) -> list[tuple[str, int]]:
    out, total = [], 0
    for key, n in counts.items():
        total += n
        out.append((key, total))
    return out


@lru_cache(maxsize=4096)
def _leave_rank(robot: str) -> float:
    """A robot's fixed place in the order its server's excess robots leave."""
    return _unit(f"{robot}|leave")


def _unit(text: str) -> float:
    """A number in (0, 1) fixed by ``text`` (rendezvous hashing, per-robot jitter)."""
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return (digest + 0.5) / 2.0**64
