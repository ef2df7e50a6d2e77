"""Link adaptation on the edge: the split and codec follow the measured link (``Controller``),
and the whole network runs on the robot when the server is out of reach (``FallbackSwitch``).
``LinkAdaptation`` ties both to a ``LinkMonitor`` for the edge node (docs/ADAPTIVE.md).

Inputs are plain numbers and the profiles as ``plan.profile.load_profile`` returns them; time
is passed in (seconds, monotonic), so every decision is deterministic and testable.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtl_split_core.codec import CODECS, codec_bits
from mtl_split_core.errors import InputError
from mtl_split_core.image_codec import INPUT_SPLIT
from mtl_split_core.plan.link import Link
from mtl_split_core.plan.planner import TEMPORAL, Option, left_out, options
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.link import LinkMonitor, LinkStats
from mtl_split_core.runtime.stats import RollingStats

ADAPTIVE_MODES = ("off", "codec", "split_codec")
REMOTE, LOCAL = "remote", "local"
ACCURACY_EPS = 1e-3  # accuracy drops closer than this are equally faithful
# Measured / profiled edge time is trusted within these bounds (a robot 4x faster or 20x
# slower than its profile is a wrong profile, or a measurement gone wrong).
EDGE_SCALE = (0.25, 20.0)
MAX_EDGE_MS = 60_000.0  # a frame's edge time beyond this is a stalled worker, not a measurement
_FRAME_FATES = ("sent", "served", "dropped", "lost", "stamp_reused")  # LinkMonitor counts
# The silence limit (FallbackSwitch.silence_limit): this many times the p99 of the last
# ANSWER_DELAYS answer delays when that is longer than fallback_after. 3: a healthy link's
# answers rarely take 3x its p99, while a dead one is still noticed within seconds.
SILENCE_RTT_FACTOR = 3.0
ANSWER_DELAYS = 64
MAX_SILENCE_S = 30.0   # however slow the answers were, silence this long is an outage
MAX_SENT_REMEMBERED = 1024  # send times kept for answer delays (bounded memory)


@dataclass(frozen=True)
class Event:
    """One transition, for one log line and /diagnostics. ``kind``: 'switch' (split/codec),
    'fallback' (REMOTE -> LOCAL), 'recover' (LOCAL -> REMOTE) or 'connect' (the first
    LOCAL -> REMOTE: a server answered the edge for the first time)."""

    t: float
    kind: str
    before: str
    after: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.before} -> {self.after} ({self.reason})"


# ------------------------------------------------------------------------------ the controller
@dataclass(frozen=True)
class EdgeTimes:
    """The edge's measured per-frame times for one option (medians, ms): ``input_ms`` turns
    the camera message into an image, ``network_ms`` runs the edge network and encodes."""

    input_ms: float
    network_ms: float


class EdgeClock:
    """The newest ``size`` per-frame edge times of the current option (``LinkAdaptation``
    clears it when split or codec change). Values outside [0, ``MAX_EDGE_MS``] are ignored."""

    def __init__(self, size: int = 16, min_count: int = 4) -> None:
        self._times: deque[tuple[float, float]] = deque(maxlen=size)
        self.min_count = min_count

    def add(self, input_ms: float, network_ms: float) -> None:
        if all(math.isfinite(v) and 0 <= v <= MAX_EDGE_MS for v in (input_ms, network_ms)):
            self._times.append((float(input_ms), float(network_ms)))

    def clear(self) -> None:
        self._times.clear()

    def median(self) -> EdgeTimes | None:
        """The medians, None until ``min_count`` frames were timed."""
        if len(self._times) < self.min_count:
            return None
        return EdgeTimes(statistics.median(t[0] for t in self._times),
                         statistics.median(t[1] for t in self._times))


@dataclass(frozen=True)
class Rated:
    """A remote option evaluated for the measured link: delivered fps and budget fit."""

    option: Option
    fps: float    # min(the planner's pipelined fps, the camera's rate)
    fits: bool    # end-to-end latency within the budget

    @property
    def choice(self) -> tuple[str, str]:
        return str(self.option.split), str(self.option.codec)


class Controller:
    """Picks (split, codec) from the measured link with the planner's cost model.

    Each ``update`` turns the link statistics into a ``plan.link.Link`` and rates every remote
    option of ``planner.options`` the mode allows ('codec': the current split's codecs;
    'split_codec': every split of ``splits`` x every codec of ``codecs`` — the model's:
    its entropy-coded ``eb-<k>/1`` too — and with ``image_upload`` split ``input`` with every
    image codec: the robot uploads the model-input image when that is better) by delivered
    fps (capped at the camera's rate) and latency. The target is the option with the highest
    delivered fps whose latency fits ``latency_budget_ms``; among options within
    ``fps_tolerance`` of that fps, the most faithful one, then the fastest.

    Every option is weighed by measured data only: bytes and times from both profiles, and
    fidelity from ``accuracy`` ('split codec' -> relative drop, ``planner.accuracy_drops``:
    the card's metrics from `mtl-split eval --into-card`, or an accuracy file). An option one
    profile lacks, or, with ``accuracy``, one without its own row, is never chosen
    (``left_out`` says why; ``log`` gets one line each, once). Without any ``accuracy`` the
    fixed-bit codecs rank by their bits (f16 > q8 > q4) and entropy-coded and image codecs
    are left out: no formula gives their fidelity (``planner.unweighable``). The configured
    option is kept even so (the user chose it); the controller leaves it when it must, or
    for an option of known fidelity at more fps. With ``max_accuracy_drop`` below 1
    ``accuracy`` also sets a floor: options losing more than that are never chosen.

    The link estimate: ``LinkStats.bandwidth_bps`` (at least the goodput and at least what
    single frames achieved), as a pure bandwidth (``rtt_ms`` 0: propagation is inside the
    per-frame estimate) and no loss (reliable QoS turns packet loss into retransmission delay,
    already in the measured RTT). Server times get the measured overhead on top of the profile
    (outputs assembly and publishing, queueing behind other robots): the server's reported
    ``server_ms`` minus the profile's time for the current option. Edge times are measured
    too (``update``'s ``edge``: the edge's median times for the current option): the profile's
    times scaled by measured / profiled network time (within ``EDGE_SCALE``: a loaded or
    slower robot slows every split alike), plus the measured time to turn the camera message
    into an image (the same for every option; the profile has none).

    No flapping: decisions use the *lowest* bandwidth estimate of the last ``min_hold_s``
    seconds (a drop acts at once, a rise only once it has lasted ``min_hold_s``), and a switch
    needs, after the current choice was held ``min_hold_s``, either ``margin`` (20%) more
    delivered fps, or more fidelity at as much fps (within ``fps_tolerance``) *even with
    ``margin`` less bandwidth* — a move up must survive the noise that would undo it. The one
    exception to the hold: a current choice over the budget is left at once.

    A link that cannot carry the current stream (``LinkStats.late_fraction`` above
    ``max_late``: frames answered late or not at all) makes the current option unfit at once,
    whatever the model says, and sets a *ceiling*: ``margin`` less than the bit rate offered
    (the stream it could not carry), lowered by every further such reading and held
    ``ceiling_s`` after the last one. The per-frame estimate alone misses this on a
    bursty link (frames that find the token bucket full cross at line rate); the ceiling also
    keeps a move back up from being retried before ``ceiling_s`` has passed, so a link that
    only carries the light option does not make the choice flap.

    When no option fits the budget, ``remote_fits`` goes False (the FallbackSwitch runs the
    network locally; probes keep measuring the link) until, after a hold, one fits with
    ``margin`` less bandwidth. The hold is ``min_hold_s``, doubled (up to ``max_hold_s``)
    each time the budget is broken again within ``ceiling_s`` of a return: on a machine whose
    measured times sit at the budget's edge (light probes measure a faster server than the full
    stream finds) the verdict would otherwise flip every few seconds. Not thread-safe:
    ``LinkAdaptation`` serialises the calls.
    """

    def __init__(self, edge_profile: Mapping[str, Any], server_profile: Mapping[str, Any],
                 splits: Sequence[str], split: str, codec: str, mode: str = "split_codec",
                 latency_budget_ms: float = 150.0, codecs: Sequence[str] = CODECS,
                 accuracy: Mapping[str, float] | None = None, margin: float = 0.2,
                 min_hold_s: float = 2.0, fps_tolerance: float = 0.05, max_late: float = 0.25,
                 ceiling_s: float = 10.0, max_hold_s: float = 32.0,
                 max_accuracy_drop: float = 1.0, image_upload: bool = True,
                 temporal: bool = True, log: Callable[[str], None] | None = None) -> None:
        if mode not in ADAPTIVE_MODES[1:]:
            raise ConfigError("adaptive", f"controller mode {mode!r}: expected one of "
                              f"{', '.join(ADAPTIVE_MODES[1:])} ('off' runs no controller)")
        if not (math.isfinite(latency_budget_ms) and latency_budget_ms > 0):
            raise ConfigError("latency_budget_ms", f"{latency_budget_ms} must be > 0 ms")
        if not (0 <= margin < 1 and 0 <= min_hold_s <= max_hold_s < 3600
                and 0 <= fps_tolerance < 1 and 0 <= max_late < 1 and 0 <= ceiling_s < 3600):
            raise ConfigError("adaptive", f"margin {margin} [0, 1), min_hold_s {min_hold_s} "
                              f"[0, max_hold_s {max_hold_s} < 3600) s, fps_tolerance "
                              f"{fps_tolerance} [0, 1), max_late {max_late} [0, 1) or "
                              f"ceiling_s {ceiling_s} [0, 3600) s out of range")
        self.edge_profile, self.server_profile = dict(edge_profile), dict(server_profile)
        self.accuracy = dict(accuracy or {})
        try:  # the planner checks that both profiles describe the same splits and codecs
            every = options(self.edge_profile, self.server_profile, Link(1e6), self.accuracy)
        except (InputError, KeyError, TypeError) as err:
            raise ConfigError("profiles", f"unusable robot/server profiles: {err}") from None
        # The profile's edge time per option: what a measured one is compared with.
        self._profiled_edge_ms = {(o.split, o.codec): o.edge_ms for o in every
                                  if o.split is not None}
        # A temporal codec's drop is its base's and what its stream lost against it
        # (planner.temporal_drop): kept by name beside the others'.
        self.accuracy.update({str(o.name): float(o.accuracy_drop) for o in every
                              if o.keyframe_bytes is not None and o.accuracy_drop is not None})
        measured = set(self._profiled_edge_ms)
        wanted = [(s, c) for s in splits for c in codecs]
        if image_upload:  # every image codec a profile measured
            wanted += [(INPUT_SPLIT, c) for p in (self.edge_profile, self.server_profile)
                       for c in (p.get(INPUT_SPLIT) or {}).get("codecs", {})]
        if temporal:  # every temporal codec a profile streamed at one of the splits
            wanted += [(sp, c) for p in (self.edge_profile, self.server_profile)
                       for sp, e in ((p.get(TEMPORAL) or {}).get("splits") or {}).items()
                       if sp in splits for c in e.get("codecs", {})]
        why_not = left_out(self.edge_profile, self.server_profile, self.accuracy)
        profiled = [c for c in dict.fromkeys(wanted) if c in measured]
        if (split, codec) not in profiled:
            raise ConfigError("split", f"{split} {codec} is not among the profiled options of "
                              f"the model: {', '.join(map(_name, profiled)) or 'none'}")
        # Options never chosen ('split codec' -> why): measured by one profile, or of unknown
        # fidelity. Told once (``log``), kept for /diagnostics and tests.
        self.left_out = {_name(c): why_not[_name(c)] for c in dict.fromkeys(wanted)
                         if _name(c) in why_not and c != (split, codec)}
        if image_upload and INPUT_SPLIT in why_not:  # no image codec measured at all
            self.left_out[INPUT_SPLIT] = why_not[INPUT_SPLIT]
        if temporal and TEMPORAL in why_not:  # no temporal codec streamed at all
            self.left_out[TEMPORAL] = why_not[TEMPORAL]
        start = _name((split, codec))
        for name, why in self.left_out.items():
            if log is not None:
                log(f"adaptive: {name} is not an option: {why}")
        if log is not None and start in why_not:
            log(f"adaptive: {start}, the configured option, is kept though {why_not[start]}: "
                "the controller never prefers it for fidelity")
        self.choices = [c for c in profiled if _name(c) not in self.left_out]
        self.choices = self._accurate_enough(self.choices, max_accuracy_drop)
        if (split, codec) not in self.choices:
            raise ConfigError("max_accuracy_drop", f"{split} {codec} loses more than "
                              f"{max_accuracy_drop:g} of the model's best accuracy (allowed: "
                              f"{', '.join(map(_name, self.choices)) or 'none'})")
        self.mode, self.budget_ms = mode, float(latency_budget_ms)
        self.margin, self.min_hold_s = float(margin), float(min_hold_s)
        self.fps_tolerance = float(fps_tolerance)
        self.max_late, self.ceiling_s = float(max_late), float(ceiling_s)
        self.max_hold_s = float(max_hold_s)
        self.return_hold_s = self.min_hold_s  # LOCAL for the budget: the hold before a return
        self._returned = -math.inf            # the last return from a budget verdict
        self.edge_scale, self.input_ms = 1.0, 0.0  # measured edge times (class docstring)
        self.current: tuple[str, str] = (split, codec)
        self.remote_fits = True
        self.verdict = "not measured yet"
        self._since: float | None = None  # when the current choice / verdict began
        self._bandwidth: deque[tuple[float, float]] = deque(maxlen=4096)
        self.bandwidth_bps = math.nan  # the estimate the last decision used
        self._ceiling: tuple[float, float] | None = None  # (last saturated reading, bit/s)

    def _accurate_enough(self, choices: list[tuple[str, str]], max_drop: float
                         ) -> list[tuple[str, str]]:
        """The choices whose measured accuracy drop is at most ``max_drop`` (1 = all of them;
        below 1 an option with no measured drop is left out, as ``planner.choose`` does)."""
        if not (math.isfinite(max_drop) and 0 <= max_drop <= 1):
            raise ConfigError("max_accuracy_drop", f"{max_drop} must be in [0, 1]")
        if max_drop >= 1:
            return choices
        if not self.accuracy:
            raise ConfigError("max_accuracy_drop", "needs the accuracy of the options "
                              "(`mtl-split eval --out` results)")
        return [c for c in choices
                if self.accuracy.get(_name(c), math.inf) <= max_drop + ACCURACY_EPS]

    # -------------------------------------------------------------------------- decisions
    def pin(self, split: str, codec: str, now: float) -> None:
        """The user set split/codec (``ros2 param set``): adopt them and hold them."""
        if (split, codec) not in self.choices:
            why = self.left_out.get(_name((split, codec)), "not among the profiled options")
            raise ConfigError("split", f"{split} {codec}: {why}; the controller's options: "
                              f"{', '.join(map(_name, self.choices))}")
        self.current, self._since = (split, codec), float(now)

    def update(self, now: float, stats: LinkStats, source_fps: float | None = None,
               edge: EdgeTimes | None = None) -> list[Event]:
        """Re-decide from ``stats`` and ``edge``, the edge's measured times for the current
        option (None: not measured, the profile's); the switches made (none while nothing was
        measured)."""
        now = float(now)
        if self._since is None:
            self._since = now
        self._measured_edge(edge)
        saturated = self._saturation(now, stats)
        ceiling = self.ceiling_bps(now)
        bandwidth = stats.bandwidth_bps()
        fresh = math.isfinite(bandwidth) and bandwidth > 0
        if not fresh and math.isnan(ceiling):
            return []  # nothing answered in the window: the FallbackSwitch handles silence
        if fresh:
            self._bandwidth.append((now, bandwidth))
        while self._bandwidth and self._bandwidth[0][0] < now - self.min_hold_s:
            self._bandwidth.popleft()
        self.bandwidth_bps = min([b for _, b in self._bandwidth]
                                 + ([] if math.isnan(ceiling) else [ceiling]))
        rated = self.rate(self.bandwidth_bps, stats, source_fps)
        if saturated:  # whatever the model says at this bandwidth, the link did not carry it
            rated[self.current] = dataclasses.replace(rated[self.current], fits=False)
        target = self.best(rated)
        current = rated[self.current]
        held = now - self._since >= self.min_hold_s
        if target is None:
            fastest = min(rated.values(), key=lambda r: r.option.worst_latency_ms)
            self.verdict = (f"no option within {self.budget_ms:g} ms at "
                            f"{_mbit(self.bandwidth_bps)}: the fastest, {fastest.option.name}, "
                            f"needs {fastest.option.worst_latency_ms:.0f} ms")
            if self.remote_fits:
                # Broken again soon after a return: wait twice as long before the next one.
                self.return_hold_s = (min(2 * self.return_hold_s, self.max_hold_s)
                                      if now - self._returned < self.ceiling_s
                                      else self.min_hold_s)
                self.remote_fits, self._since = False, now
            return []
        if not self.remote_fits:
            # Back only on a measurement: a ceiling alone bounds the link, it does not show
            # that the link carries anything (the trace: "fits again" in the middle of an
            # outage, on the ceiling of the phase before).
            safe = self._safe(stats, source_fps)
            if now - self._since < self.return_hold_s or safe is None or not fresh:
                return []
            self.remote_fits, self._returned = True, now
            self.verdict = (f"{safe.option.name} fits the budget again at "
                            f"{_mbit(self.bandwidth_bps)}")
            return self._switch(now, safe, self.verdict)
        self.verdict = (f"{_name(self.current)}: {current.fps:.1f} fps, "
                        f"{current.option.latency_ms:.0f} ms at {_mbit(self.bandwidth_bps)}")
        if not current.fits:
            why = (f"{stats.late_fraction:.0%} of its frames late or lost at "
                   f"{_mbit(stats.offered_bps)} offered" if saturated else
                   f"needs {current.option.worst_latency_ms:.0f} ms > budget "
                   f"{self.budget_ms:g} ms")
            return self._switch(now, target, f"{_name(self.current)} {why} at "
                                f"{_mbit(self.bandwidth_bps)}")
        if not held or target.choice == self.current:
            return []
        if target.fps >= current.fps * (1 + self.margin):
            return self._switch(now, target, f"{target.fps:.1f} fps instead of "
                                f"{current.fps:.1f} at {_mbit(self.bandwidth_bps)}")
        safe = self._safe(stats, source_fps)
        if (safe is not None and safe.fps >= current.fps * (1 - self.fps_tolerance)
                and self._more_faithful(safe.option, current.option)):
            return self._switch(now, safe, f"more faithful at {safe.fps:.1f} fps even with "
                                f"{self.margin:.0%} less than {_mbit(self.bandwidth_bps)}")
        return []

    def _measured_edge(self, edge: EdgeTimes | None) -> None:
        if edge is None:
            self.edge_scale, self.input_ms = 1.0, 0.0
            return
        profiled = max(self._profiled_edge_ms[self.current], 1e-3)
        self.edge_scale = min(max(edge.network_ms / profiled, EDGE_SCALE[0]), EDGE_SCALE[1])
        self.input_ms = edge.input_ms

    def _saturation(self, now: float, stats: LinkStats) -> bool:
        """Whether the link is not carrying the current stream; if so, lower the ceiling
        (class docstring)."""
        late = stats.late_fraction
        if not (math.isfinite(late) and late > self.max_late and stats.offered_bps > 0):
            return False
        self._lower_ceiling(now, stats.offered_bps)
        return True

    def _lower_ceiling(self, now: float, offered_bps: float) -> None:
        cap = offered_bps * (1 - self.margin)
        held = self.ceiling_bps(now)
        self._ceiling = (now, cap if math.isnan(held) else min(held, cap))


    def ceiling_bps(self, now: float) -> float:
        """The bandwidth ceiling in force at ``now`` (NaN: none)."""
        if self._ceiling is None or now - self._ceiling[0] > self.ceiling_s:
            return math.nan
        return self._ceiling[1]

    def _safe(self, stats: LinkStats, source_fps: float | None) -> Rated | None:
        """The target if the link had ``margin`` less bandwidth: what a move up (more
        fidelity, or back from LOCAL) must still be good at, so it is not undone by noise."""
        return self.best(self.rate(self.bandwidth_bps * (1 - self.margin), stats, source_fps))

    def forget(self, now: float, stats: LinkStats | None = None) -> list[Event]:
        """After a silence: drop the bandwidth history and the budget verdict (stale now) and
        take the lightest option (fewest bytes; the current split in 'codec' mode), held from
        ``now``. A silence is an outage or a link that stopped carrying the stream (the bench's
        0.5 Mbit/s phase: f16's queue silenced the feedback before its late answers could
        show), and the link is unknown: resume light, move up once measured (``min_hold_s``,
        ``margin``). ``stats`` from just before the silence: when its newest answer was
        already late (a queue, not an outage, whose last answers are on time) the silence
        counts as a saturated reading and sets the ceiling, so the stream that silenced the
        link is not tried again every ``min_hold_s``. A ceiling stays until it expires: an
        outage does not widen a link."""
        if stats is not None and stats.last_rtt_ms > self.budget_ms and stats.offered_bps > 0:
            self._lower_ceiling(now, stats.offered_bps)
        self._bandwidth.clear()
        self.remote_fits, self.verdict = True, "not measured yet"
        # A stream restarts with a keyframe: its first frame is the keyframe's bytes.
        light = min(self.rate(1e6).values(), key=lambda r: (_first_bytes(r.option),
                                                            r.option.bytes))
        events = self._switch(now, light, "after a silence: the lightest option until the "
                              "link is measured again")
        self._since = float(now)
        return events

    def _switch(self, now: float, target: Rated, reason: str) -> list[Event]:
        before, self.current, self._since = self.current, target.choice, now
        if before == self.current:
            return []
        return [Event(now, "switch", _name(before), _name(self.current), reason)]

    # -------------------------------------------------------------------------- the model
    def rate(self, bandwidth_bps: float, stats: LinkStats | None = None,
             source_fps: float | None = None) -> dict[tuple[str, str], Rated]:
        """Every allowed remote option at ``bandwidth_bps``, by (split, codec)."""
        link = Link(bandwidth_bps)
        every = {(o.split, o.codec): o for o in
                 options(self.edge_profile, self.server_profile, link, self.accuracy)}
        overhead = 0.0
        if stats is not None and math.isfinite(stats.server_ms_p50):
            overhead = max(0.0, stats.server_ms_p50 - every[self.current].server_ms)
        cap = source_fps if source_fps is not None and source_fps > 0 else math.inf
        rated = {}
        for choice in self.choices:
            if self.mode == "codec" and choice[0] != self.current[0]:
                continue
            option = every[choice]
            option = dataclasses.replace(
                option, server_ms=option.server_ms + overhead,
                edge_ms=option.edge_ms * self.edge_scale + self.input_ms)
            if choice != self.current and option.keyframe_bytes is not None:
                option = self._switching_in(option, link, cap)
            # The budget holds for every frame: a stream's keyframes too.
            rated[choice] = Rated(option, min(option.fps, cap),
                                  option.worst_latency_ms <= self.budget_ms)
        return rated

    def _switching_in(self, option: Option, link: Link, cap: float) -> Option:
        """A temporal codec the edge is not streaming: a switch restarts its stream with a
        keyframe, so the first hold (``min_hold_s``) carries one keyframe more than the
        stream's mean (one per N frames, in the profile). Rated with that keyframe spread over
        the hold's frames: bytes = mean + (keyframe - mean) / frames, the keyframe's own
        latency unchanged."""
        frames = max(1.0, self.min_hold_s * min(cap, option.fps))
        nbytes = option.bytes + max(0.0, float(option.keyframe_bytes or 0.0) - option.bytes) \
            / frames
        link_ms = link.transfer_ms(nbytes)
        return dataclasses.replace(option, bytes=nbytes, link_ms=link_ms,
                                   keyframe_ms=option.keyframe_ms - (link_ms - option.link_ms))

    def best(self, rated: Mapping[tuple[str, str], Rated]) -> Rated | None:
        """The target among ``rated`` (class docstring), None when none fits the budget."""
        fits = [r for r in rated.values() if r.fits]
        if not fits:
            return None
        top = max(r.fps for r in fits)
        tier = [r for r in fits if r.fps >= top * (1 - self.fps_tolerance)]

        def fidelity(r: Rated) -> float:
            value = self._fidelity(r.option)
            return -math.inf if value is None else value

        return max(tier, key=lambda r: (fidelity(r), -r.option.latency_ms))

    def _fidelity(self, option: Option) -> float | None:
        """Higher is more faithful: minus the measured drop in steps of ``ACCURACY_EPS``
        (drops that close are equally faithful), or without any measured accuracy a fixed-bit
        codec's bits (f16: 16); None when unknown (class docstring)."""
        if self.accuracy:
            drop = option.accuracy_drop
            return None if drop is None else -round(float(drop) / ACCURACY_EPS)
        if option.codec not in CODECS:
            return None
        bits = codec_bits(str(option.codec))
        return 16.0 if bits is None else float(bits)

    def _more_faithful(self, a: Option, b: Option) -> bool:
        """Whether ``a`` is known to be more faithful than ``b`` (never when either is not)."""
        if self.accuracy:
            return (a.accuracy_drop is not None and b.accuracy_drop is not None
                    and a.accuracy_drop < b.accuracy_drop - ACCURACY_EPS)
        fa, fb = self._fidelity(a), self._fidelity(b)
        return fa is not None and fb is not None and fa > fb


def _name(choice: tuple[str, str]) -> str:
    return f"{choice[0]} {choice[1]}"


def _first_bytes(option: Option) -> float:
    """The bytes of an option's first frame: a stream's keyframe, any other's every frame."""
    return option.bytes if option.keyframe_bytes is None else option.keyframe_bytes


def _mbit(bps: float) -> str:
    return f"{bps / 1e6:.2f} Mbit/s"


# ------------------------------------------------------------------------------ the fallback
class FallbackSwitch:
    """REMOTE (split computing) or LOCAL (the whole network on the robot).

    It starts LOCAL ("start": no server has answered yet) and probes at once, so an edge
    started before its server serves its first frames itself; the first answer to a probe
    starts split computing (event ``connect``). With ``fallback_after`` 0 it starts REMOTE.

    REMOTE -> LOCAL when a frame sent has had no feedback of any kind for the silence limit
    (``silence_limit``: ``fallback_after`` seconds, or ``SILENCE_RTT_FACTOR`` x the p99 of the
    recent answer delays when that is longer, so a link whose answers normally take 0.7 s is
    not taken for a dead one; 0 = never on silence), or when the controller finds no option
    within the latency budget. In LOCAL the edge publishes one probe frame (its ordinary
    features, marked as a probe: the server answers it and publishes no outputs, the robot
    serves the frame itself)
    every ``probe_period`` seconds; after a silence the first feedback for a probe returns it
    to REMOTE, after a budget verdict the controller's next verdict does (measured on the
    probes). The first probe after a silence waits one ``probe_period``: the silence has just
    shown that the server does not answer, and the newest unanswered frame is still waiting in
    the writer (a probe now would only replace it); after a budget verdict the first one goes
    at once (it measures the link).

    A returning server never gets a burst of stale frames: the features writer is reliable with
    KEEP_LAST 1 history (volatile durability), so while the server is unreachable DDS keeps at
    most the newest sample for it and delivers at most that one on reconnection — a probe at
    most ``probe_period`` old — and a restarted server (a new reader) gets none. Until a probe
    is answered the edge publishes nothing but probes, at most 1 / ``probe_period`` per second,
    so full rate resumes only once the server has shown that it serves again.
    """

    def __init__(self, fallback_after: float = 0.5, probe_period: float = 0.5,
                 max_probes: int = 64, start_local: bool = True) -> None:
        if not (math.isfinite(fallback_after) and 0 <= fallback_after <= 3600):
            raise ConfigError("fallback_after", f"{fallback_after} must be in [0, 3600] s "
                              "(0 = no fallback on silence)")
        if not (math.isfinite(probe_period) and 0.01 <= probe_period <= 3600):
            raise ConfigError("probe_period", f"{probe_period} must be in [0.01, 3600] s")
        self.fallback_after, self.probe_period = float(fallback_after), float(probe_period)
        self.mode, self.reason = REMOTE, "start"
        # While LOCAL: 'start', 'silence', 'budget' or 'no_server' (a pool edge, no room).
        self.cause: str | None = None
        if start_local and self.fallback_after > 0:
            self.mode, self.cause, self.reason = LOCAL, "start", "no server has answered yet"
        self._probes: deque[int] = deque(maxlen=max_probes)
        self._last_probe = -math.inf
        self._since = -math.inf  # the last transition
        self.counts = {"fallback": 0, "recover": 0}
        # Send times of recent frames and how long their answers took (seconds).
        self._sent_at: OrderedDict[int, float] = OrderedDict()
        self.answer_delays = RollingStats(ANSWER_DELAYS)

    def silence_limit(self) -> float:
        """Seconds a frame may wait for feedback before the fallback: ``fallback_after``, or
        ``SILENCE_RTT_FACTOR`` x the p99 of the last ``ANSWER_DELAYS`` answer delays when that
        is longer (capped at ``MAX_SILENCE_S``). 0 = never."""
        p99 = self.answer_delays.percentile(99.0)
        if self.fallback_after <= 0 or math.isnan(p99):
            return self.fallback_after
        return max(self.fallback_after, min(SILENCE_RTT_FACTOR * p99, MAX_SILENCE_S))

    def answer_delay(self, stamp_ns: int, now: float) -> None:
        """Feedback for the frame stamped ``stamp_ns`` arrived at ``now``: record how long it
        took (send to answer, what the silence clock measures)."""
        sent = self._sent_at.pop(int(stamp_ns), None)
        if sent is not None and now >= sent:
            self.answer_delays.add(float(now) - sent)

    def update(self, now: float, unanswered_s: float, remote_fits: bool = True,
               verdict: str = "", no_server: str | None = None) -> list[Event]:
        """Transitions due at ``now``; ``unanswered_s``: the link's (``LinkStats``), all this
        needs of it (asked per frame: ``LinkMonitor.unanswered_s``). ``no_server`` (why a
        pool edge has no server to send to, e.g. none has room): LOCAL for cause
        ``no_server``, without probes (nothing to probe); None again: REMOTE at once (the pool
        chose a server, its publisher matched)."""
        if no_server is not None:
            if self.mode == REMOTE:
                return self._go(now, LOCAL, "no_server", no_server)
            if self.cause != "no_server":
                self.cause, self.reason = "no_server", no_server
                self._probes.clear()
            return []
        if self.cause == "no_server":
            return self._go(now, REMOTE, None, "a pool server has room")
        if self.mode == REMOTE:
            # Frames sent before a recovery do not count: after one the server gets a whole
            # fallback_after to answer the first full-rate frames.
            silent = min(unanswered_s, now - self._since)
            # The limit (a percentile) only once the silence reaches its least value (never
            # with fallback_after 0: no fallback on silence).
            limit = self.silence_limit() if 0 < self.fallback_after <= silent else math.inf
            if limit > 0 and silent >= limit:
                return self._go(now, LOCAL, "silence", f"no feedback for {silent:.2f} s "
                                f"(limit {limit:.2f} s: fallback_after "
                                f"{self.fallback_after:g} s or {SILENCE_RTT_FACTOR:g} x the "
                                f"answers' p99)")
            if not remote_fits:
                return self._go(now, LOCAL, "budget", verdict or "no option within the budget")
        elif self.cause == "budget" and remote_fits:
            return self._go(now, REMOTE, None, verdict or "an option fits the budget again")
        return []

    def probe_due(self, now: float) -> bool:
        """In LOCAL: whether this frame should go out as a probe (never without a server)."""
        return (self.mode == LOCAL and self.cause != "no_server"
                and now - self._last_probe >= self.probe_period)

    def rebind(self, now: float) -> list[Event]:
        """The edge now sends to another server: REMOTE with a fresh silence clock (the new
        server gets a whole silence limit for its first answer); the old server's answer
        delays say nothing about the new one. LOCAL for the budget stays (the link is the
        same)."""
        self._sent_at.clear()
        self.answer_delays = RollingStats(ANSWER_DELAYS)
        if self.cause == "budget":
            return []
        if self.mode == REMOTE:
            self._since = float(now)
            return []
        return self._go(now, REMOTE, None, "moved to another pool server")

    def probe_again(self) -> None:
        """Forget the probes sent so far (their answers no longer count) and probe with the
        next frame."""
        self._probes.clear()
        self._last_probe = -math.inf

    def is_probe(self, stamp_ns: int) -> bool:
        """Whether ``stamp_ns`` is a probe sent in the current LOCAL period."""
        return self.mode == LOCAL and int(stamp_ns) in self._probes

    def sent(self, stamp_ns: int, now: float) -> None:
        """A features message left; in LOCAL it is a probe."""
        self._sent_at[int(stamp_ns)] = float(now)
        while len(self._sent_at) > MAX_SENT_REMEMBERED:
            self._sent_at.popitem(last=False)
        if self.mode == LOCAL:
            self._probes.append(int(stamp_ns))
            self._last_probe = float(now)

    def answered(self, stamp_ns: int, now: float, remote_fits: bool = True,
                 verdict: str = "") -> list[Event]:
        """Valid feedback for ``stamp_ns`` arrived: a probe's ends a silence (or the start) —
        to REMOTE, or, when the controller (having seen the probe) finds no option within the
        budget, LOCAL for that reason from now on."""
        if self.cause in ("silence", "start") and self.is_probe(stamp_ns):
            if remote_fits:
                return self._go(now, REMOTE, None, "the server answered a probe")
            self.cause, self.reason = "budget", verdict or "no option within the budget"
        return []

    def _go(self, now: float, mode: str, cause: str | None, reason: str) -> list[Event]:
        starting = self.cause == "start"  # the first answer: not a recovery from anything
        before, self.mode, self.cause, self.reason = self.mode, mode, cause, reason
        self._since = float(now)
        self._probes.clear()
        # After a budget verdict the first LOCAL frame probes at once; after a silence one
        # probe_period later (class docstring).
        self._last_probe = float(now) if cause == "silence" else -math.inf
        kind = "fallback" if mode == LOCAL else "connect" if starting else "recover"
        if kind in self.counts:
            self.counts[kind] += 1
        return [Event(now, kind, before.upper(), mode.upper(), reason)]


# ------------------------------------------------------------------------------ the edge's view
@dataclass(frozen=True)
class FramePlan:
    """What the edge does with one camera frame."""

    send: bool     # encode with (split, codec) and publish the features
    local: bool    # LOCAL mode: the robot serves this frame itself (a probe too)
    split: str
    codec: str
    events: tuple[Event, ...]  # transitions since the last frame: log one line each
    # A probe (sent while LOCAL, marked SplitFeatures.probe): the server answers it and
    # publishes no outputs for it, so the robot's are the frame's only ones.
    probe: bool = False


class LinkAdaptation:
    """The edge node's one object for link feedback, adaptation and fallback (thread-safe).

    Per camera frame ``frame(now)`` says what to do; after publishing features ``sent(...)``;
    per LinkFeedback message ``feedback(...)``; the diagnostics timer reads ``values(now)``
    and ``problem()``. ``controller`` None = ``adaptive: off`` (split/codec stay as
    configured; the fallback still works).
    """

    def __init__(self, split: str, codec: str, controller: Controller | None = None,
                 fallback_after: float = 0.5, probe_period: float = 0.5,
                 monitor: LinkMonitor | None = None, start_local: bool = True) -> None:
        # A frame whose network round trip alone breaks the budget was not carried in time.
        late_ms = 100.0 if controller is None else controller.budget_ms
        self.monitor = monitor or LinkMonitor(late_ms=min(late_ms, LinkMonitor().timeout_s * 1e3))
        self.controller = controller
        self.switch = FallbackSwitch(fallback_after, probe_period, start_local=start_local)
        self._fixed = (split, codec)
        self._lock = threading.Lock()
        self._events: list[Event] = []        # from feedback, handed out by the next frame()
        self._source_fps: float | None = None  # the camera's rate frame() was last given
        self.last_event: Event | None = None
        self.switches = 0
        self._sending = (split, codec, self.switch.mode)  # what the monitor's epoch began with
        self._reachable = False  # in LOCAL after a silence: a probe was answered
        self.edge_clock = EdgeClock()  # the current option's edge times

    @property
    def choice(self) -> tuple[str, str]:
        return self.controller.current if self.controller is not None else self._fixed

    @property
    def mode(self) -> str:
        return self.switch.mode

    def configure(self, split: str, codec: str, now: float) -> None:
        """The user changed split/codec at run time (already validated by the runner)."""
        with self._lock:
            if self.controller is not None:
                self.controller.pin(split, codec, now)
            self._fixed = (split, codec)
            self._new_epoch_if_changed(now)

    def rebind(self, now: float) -> list[Event]:
        """The edge moved to another server (a pool, docs/POOL.md): the old server's waiting
        frames and measurements are not the new one's, so they are dropped and the new server
        starts REMOTE with a fresh silence clock. The controller keeps its bandwidth history
        (the robot's uplink is the same). The events (logged by the next ``frame``)."""
        with self._lock:
            self.monitor.abandon_pending(now)
            self.monitor.forget(stale_before=now)
            events = self.switch.rebind(now)
            self._note(events)
            self._new_epoch_if_changed(now)
            self._events += events
            return events

    def frame(self, now: float, source_fps: float | None = None,
              no_server: str | None = None) -> FramePlan:
        """Decide for one camera frame; ``source_fps``: the camera's rate (None = no cap);
        ``no_server``: why there is no server to send to (a pool without room): LOCAL."""
        with self._lock:
            self._source_fps = source_fps
            # The window's statistics only for a controller (the switch needs one number of
            # them): they were most of this call's time, on the frame's critical path.
            stats = None if self.controller is None else self.monitor.stats(now)
            events, self._events = self._events, []
            fits, verdict = True, ""
            if self.controller is not None and stats is not None:
                events += self.controller.update(now, stats, source_fps,
                                                 self.edge_clock.median())
                fits, verdict = self.controller.remote_fits, self.controller.verdict
            events += self._forget_if_silent(self.switch.update(
                now, self.monitor.unanswered_s(now), fits, verdict, no_server), stats)
            self._note(events)
            self._new_epoch_if_changed(now)
            local = self.switch.mode == LOCAL
            split, codec = self.choice
            probe = local and self.switch.probe_due(now)
            return FramePlan(not local or probe, local, split, codec, tuple(events), probe)

    def edge_time(self, input_ms: float, network_ms: float) -> None:
        """One frame's edge times with the current split and codec (``EdgeTimes``)."""
        with self._lock:
            self.edge_clock.add(input_ms, network_ms)

    def sent(self, stamp_ns: int, nbytes: int, now: float) -> None:
        """The features of the frame stamped ``stamp_ns`` were published."""
        with self._lock:
            self.monitor.sent(stamp_ns, nbytes, now)
            self.switch.sent(stamp_ns, now)

    def feedback(self, stamp_ns: int, status: int, server_ms: float, now: float) -> str:
        """One LinkFeedback; returns ``LinkMonitor.feedback``'s verdict (count the ignored)."""
        with self._lock:
            verdict = self.monitor.feedback(stamp_ns, status, server_ms, now)
            if verdict in ("served", "dropped"):
                self.switch.answer_delay(stamp_ns, now)
            if verdict in ("served", "dropped") and self.switch.mode == LOCAL:
                # Let the controller see the probe before the switch acts on it: a link that
                # answers but is too slow for the budget must not bring REMOTE back for a frame.
                events: list[Event] = []
                if (self.controller is not None and self.switch.cause == "silence"
                        and self.switch.is_probe(stamp_ns) and not self._reachable):
                    # The server is back, but this probe may have waited out the outage in the
                    # writer: its round trip measures the outage, not the link (the bench:
                    # 0.07 Mbit/s on a 20 Mbit/s link, then 5 s more of LOCAL). Forget it and
                    # send the next frame as a probe: its answer measures the link as it is.
                    self._reachable = True
                    self.monitor.forget(stale_before=now)
                    events += self.controller.forget(now)
                    self.switch.probe_again()
                else:
                    stats, fits, why = self.monitor.stats(now), True, ""
                    if self.controller is not None:
                        events += self.controller.update(now, stats, self._source_fps,
                                                         self.edge_clock.median())
                        fits, why = self.controller.remote_fits, self.controller.verdict
                    events += self.switch.answered(stamp_ns, now, fits, why)
                    if self.switch.cause == "budget":
                        events += self.switch.update(now, stats.unanswered_s, fits, why)
                self._note(events)
                self._new_epoch_if_changed(now)
                self._events += events
            return verdict

    def _new_epoch_if_changed(self, now: float) -> None:
        """A new split, codec or mode: the monitor judges the new stream on its own frames."""
        sending = (*self.choice, self.switch.mode)
        if sending != self._sending:
            if sending[2] != self._sending[2]:
                self._reachable = False
            if sending[:2] != self._sending[:2]:  # other split/codec: other edge times
                self.edge_clock.clear()
            self._sending = sending
            self.monitor.new_epoch(now)

    def _forget_if_silent(self, events: list[Event], stats: LinkStats | None) -> list[Event]:
        """After a silence fallback the link is unknown: measurements from before it would
        bring REMOTE back on stale numbers, so the probes start afresh (``stats``: the last
        before the silence, for the controller to tell a queue from an outage; None without
        a controller)."""
        fallback = [e for e in events if e.kind == "fallback"]
        if self.switch.cause == "silence" and fallback:
            self.monitor.forget()
            if self.controller is not None and stats is not None:
                events = events + self.controller.forget(fallback[0].t, stats)
        return events

    def _note(self, events: list[Event]) -> None:
        for event in events:
            self.last_event = event
            self.switches += event.kind == "switch"

    def problem(self) -> str | None:
        """The /diagnostics WARN message while running locally, else None."""
        return f"running locally: {self.switch.reason}" if self.switch.mode == LOCAL else None

    def values(self, now: float) -> dict[str, object]:
        """The /diagnostics key/values (docs/ADAPTIVE.md lists them)."""
        with self._lock:
            s = self.monitor.stats(now)
            split, codec = self.choice
            ctrl = self.controller
            values: dict[str, object] = {
                "link_mode": self.switch.mode, "link_mode_reason": self.switch.reason,
                "adaptive": "off" if ctrl is None else ctrl.mode,
                "adaptive_choice": f"{split} {codec}",
                "adaptive_verdict": "" if ctrl is None else ctrl.verdict,
                "bandwidth_estimate_mbps": math.nan if ctrl is None else ctrl.bandwidth_bps / 1e6,
                "bandwidth_ceiling_mbps": math.nan if ctrl is None else ctrl.ceiling_bps(now) / 1e6,
                "edge_time_scale": math.nan if ctrl is None else ctrl.edge_scale,
                "edge_input_ms": math.nan if ctrl is None else ctrl.input_ms,
                "return_hold_s": math.nan if ctrl is None else ctrl.return_hold_s,
                "late_fraction": s.late_fraction, "offered_mbps": s.offered_bps / 1e6,
                "goodput_mbps": s.goodput_bps / 1e6, "effective_mbps": s.effective_bps / 1e6,
                "rtt_ms_p50": s.rtt_ms_p50, "feedback_server_ms_p50": s.server_ms_p50,
                "link_loss": s.loss, "server_drop_rate": s.server_drop_rate,
                "fps_sent": s.fps_sent, "fps_acked": s.fps_acked, "fps_served": s.fps_served,
                "feedback_silent_s": s.silent_s, "feedback_pending": s.pending,
                "fallback_silence_s": self.switch.silence_limit(),
                "answer_ms_p99": self.switch.answer_delays.percentile(99.0) * 1e3,
                "fallbacks": self.switch.counts["fallback"],
                "recoveries": self.switch.counts["recover"], "switches": self.switches,
                "last_event": "" if self.last_event is None else str(self.last_event),
            }
            # Lifetime counts: frames by fate, and feedback ignored by reason.
            values.update({(f"frames_{k}" if k in _FRAME_FATES else f"feedback_{k}"): v
                           for k, v in s.counts.items()})
            return values
