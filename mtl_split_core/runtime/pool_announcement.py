"""What a server tells the pool about itself, and the bounds every announced field must meet.

A server announces itself every ``ANNOUNCE_PERIOD_S`` on one global topic (docs/POOL.md): its
id, where robots send features to it (``input_topic``, a template with ``{robot}``), the models
it serves, its capacity and load, and which robots it serves or refuses. Edges choose from
these (``pool_view.PoolView``), the server builds them (``pool_admission.ServerAdmission``).
Announcements come from the network: ``check_announcement`` is the one place their bounds are
checked, each violation an ``AnnouncementRejected(reason, message)``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

ANNOUNCE_PERIOD_S = 0.25  # the server's default period; edges call a server silent after 0.6 s
POOL_TOPIC = "/mtl_split/pool"
ROBOT_PLACEHOLDER = "{robot}"

# ------------------------------------------------------------------------------ the bounds
# A topic-name token (it is part of the server's input topic).
SERVER_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# A robot is its namespace without the leading '/': ROS name tokens joined by '/'.
ROBOT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")
MAX_ROBOT_BYTES = 128
# input_topic: '/'-separated tokens, one of them exactly '{robot}', ending in '/features'.
_TOPIC_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_TEXT_BYTES = 256          # input_topic, fingerprints, codecs, refusal reasons
MAX_FINGERPRINTS = 8
MAX_SPLITS = 16
MAX_CODECS = 16
MAX_ROBOTS = 256              # robots served, and robots refused, per announcement
MAX_FPS = 1e5                 # capacity and load, frames/s (a whole GPU cluster is far below)
MAX_MS = 6e4                  # queue delay and latency p99, ms
MAX_SEQUENCE = 2**64 - 1


class AnnouncementRejected(ValueError):
    """An announcement no edge may use; ``reason`` is a short key for counting."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Announcement:
    """One server announcement (the fields of ServerAnnouncement.msg but the auth ones)."""

    server_id: str
    sequence: int
    input_topic: str
    fingerprints: tuple[str, ...]
    splits: tuple[int, ...] = ()      # empty = every split of the model
    codecs: tuple[str, ...] = ()      # empty = every codec
    capacity_fps: float = 0.0         # 0 = not measured yet
    load_fps: float = 0.0
    queue_ms: float = math.nan
    latency_ms_p99: float = math.nan
    robots: tuple[str, ...] = ()
    accepting: bool = True
    refusal: str = ""
    refused: tuple[tuple[str, str], ...] = field(default=())  # (robot, reason)

    def input_for(self, robot: str) -> str:
        """The topic ``robot`` publishes its features on to reach this server."""
        return self.input_topic.replace(ROBOT_PLACEHOLDER, robot)

    def refusal_for(self, robot: str) -> str | None:
        """Why this server refuses ``robot``, or None."""
        return next((why for name, why in self.refused if name == robot), None)

    def serves(self, fingerprint: str, split: int | None = None, codec: str | None = None
               ) -> bool:
        """Whether it serves this model (and split and codec, when given)."""
        return (fingerprint in self.fingerprints
                and (split is None or not self.splits or split in self.splits)
                and (codec is None or not self.codecs or codec in self.codecs))

    @property
    def utilization(self) -> float:
        """load / capacity; NaN while the capacity is unknown."""
        return self.load_fps / self.capacity_fps if self.capacity_fps > 0 else math.nan


def default_input_topic(server_id: str) -> str:
    """``/{robot}/mtl_split/to/<server_id>/features``: inside the robot's namespace (so
    per-namespace access rules, e.g. SROS2 permissions or a Zenoh key filter, cover it)."""
    return f"/{ROBOT_PLACEHOLDER}/mtl_split/to/{check_server_id(server_id)}/features"


def robot_of_topic(topic: str, input_topic: str) -> str | None:
    """The robot whose features arrive on ``topic`` under the template ``input_topic``
    (what a server does with a topic it discovers), or None when it is not one of them."""
    head, _, tail = input_topic.partition(ROBOT_PLACEHOLDER)
    if not (topic.startswith(head) and topic.endswith(tail)
            and len(topic) > len(head) + len(tail)):
        return None
    robot = topic[len(head):len(topic) - len(tail)]
    return robot if valid_robot(robot) else None


def output_prefix(robot: str) -> str:
    """Where a pool server publishes ``robot``'s outputs and link_feedback: the same topics a
    fixed server uses for ``/<robot>/mtl_split/features``."""
    return f"/{robot}/mtl_split/"


def valid_robot(name: str) -> bool:
    return isinstance(name, str) and _valid_robot_name(name)


# Every announcement lists the robots a server serves and each pool view checks them all, so
# the same names come again and again; a hostile stream of new names only cycles the cache.
@functools.lru_cache(maxsize=4096)
def _valid_robot_name(name: str) -> bool:
    return len(name.encode()) <= MAX_ROBOT_BYTES and ROBOT_NAME.fullmatch(name) is not None


def robot_name(namespace: str) -> str:
    """A node's namespace as a robot name ('/fleet/r1' -> 'fleet/r1'); ValueError when it is
    not usable (a pool edge needs a namespace: its topics and outputs are named by it)."""
    name = namespace.strip("/")
    if not valid_robot(name):
        raise ValueError(f"namespace {namespace!r}: a pool robot needs a namespace of ROS name "
                         f"tokens, at most {MAX_ROBOT_BYTES} bytes (e.g. /r1)")
    return name


def check_server_id(server_id: str) -> str:
    if not SERVER_ID.fullmatch(server_id):
        raise AnnouncementRejected("server_id", f"server id {server_id[:64]!r}: expected 1-64 "
                                   "of A-Z a-z 0-9 _, a letter first")
    return server_id


def check_input_topic(topic: str) -> str:
    if len(topic.encode()) > MAX_TEXT_BYTES:
        raise AnnouncementRejected("input_topic", f"input topic of {len(topic.encode())} bytes "
                                   f"(at most {MAX_TEXT_BYTES})")
    parts = topic.split("/")
    ok = (topic.startswith("/") and parts[-1] == "features"
          and parts.count(ROBOT_PLACEHOLDER) == 1
          and all(p == ROBOT_PLACEHOLDER or _TOPIC_TOKEN.fullmatch(p) for p in parts[1:]))
    if not ok:
        raise AnnouncementRejected("input_topic", f"input topic {topic[:80]!r}: expected an "
                                   f"absolute topic with one '{ROBOT_PLACEHOLDER}' part, "
                                   "ending in '/features'")
    return topic


def _text(value: str, reason: str, what: str) -> None:
    if not isinstance(value, str) or len(value.encode()) > MAX_TEXT_BYTES:
        raise AnnouncementRejected(reason, f"{what}: not a string of at most {MAX_TEXT_BYTES} "
                                   "bytes")


def _count(values: tuple, limit: int, reason: str, what: str) -> None:
    if len(values) > limit:
        raise AnnouncementRejected(reason, f"{what}: {len(values)} entries (at most {limit})")


def _number(value: float, hi: float, reason: str, what: str, nan_ok: bool = False) -> None:
    if nan_ok and math.isnan(value):
        return
    if not (math.isfinite(value) and 0.0 <= value <= hi):
        raise AnnouncementRejected(reason, f"{what} {value!r}: expected a number in [0, {hi:g}]")


def announced_fingerprints(own: str, accepted: frozenset[str] | set[str]) -> tuple[str, ...]:
    """The model fingerprints a server announces: its own first, then the deployed edges its
    card also serves (``model.card.accepted_edges``), at most MAX_FINGERPRINTS."""
    return (own, *sorted(set(accepted) - {own}))[:MAX_FINGERPRINTS]


def check_announcement(a: Announcement) -> Announcement:
    """``a`` when every field is within its bounds; else AnnouncementRejected naming the field.
    Rejected, never clamped: an absurd value means the sender cannot be trusted with any."""
    check_server_id(a.server_id)
    if not (isinstance(a.sequence, int) and 0 <= a.sequence <= MAX_SEQUENCE):
        raise AnnouncementRejected("sequence", f"sequence {a.sequence!r}: expected a u64")
    check_input_topic(a.input_topic)
    _count(a.fingerprints, MAX_FINGERPRINTS, "fingerprints", "model fingerprints")
    if not a.fingerprints:
        raise AnnouncementRejected("fingerprints", "no model fingerprint")
    for fp in a.fingerprints:
        _text(fp, "fingerprints", "model fingerprint")
    _count(a.splits, MAX_SPLITS, "splits", "split indices")
    if any(not 0 <= s <= 255 for s in a.splits):
        raise AnnouncementRejected("splits", "split indices must be 0..255")
    _count(a.codecs, MAX_CODECS, "codecs", "codecs")
    for codec in a.codecs:
        _text(codec, "codecs", "codec")
    _number(a.capacity_fps, MAX_FPS, "capacity", "capacity_fps")
    _number(a.load_fps, MAX_FPS, "load", "load_fps")
    _number(a.queue_ms, MAX_MS, "queue_ms", "queue_ms", nan_ok=True)
    _number(a.latency_ms_p99, MAX_MS, "latency", "latency_ms_p99", nan_ok=True)
    _count(a.robots, MAX_ROBOTS, "robots", "robots served")
    _count(a.refused, MAX_ROBOTS, "refused", "robots refused")
    for robot in (*a.robots, *(r for r, _ in a.refused)):
        if not valid_robot(robot):
            raise AnnouncementRejected("robots", f"robot {robot[:64]!r}: not a namespace")
    for _, why in a.refused:
        _text(why, "refused", "refusal reason")
    _text(a.refusal, "refusal", "refusal")
    if not isinstance(a.accepting, bool):
        raise AnnouncementRejected("accepting", "accepting: not a bool")
    return a
