"""Message authentication: key files, canonical bytes, HMAC-SHA256 tags, replay protection.

ROS-free. The ROS adapter (``mtl_split_ros.features_auth``) lists a message's fields; this
module turns them into canonical bytes, signs them and verifies them.

- Key file: text, one ``key_id: secret`` per line (``#`` comments and blank lines allowed);
  the secret is hex, or base64 after a ``base64:`` prefix, at least 32 bytes. The first key
  signs (unless a key id is named); a verifier accepts every key in its file, so two keys can
  be valid at once while the edges move from one to the other.
- Canonical bytes: a domain string, then per field its name, kind and value, each
  length-prefixed (big-endian u32 lengths; big-endian values): no two different field lists
  give the same bytes.
- Replay: a signed message carries a sequence number (per signer, starting at the wall clock in
  ns, so a restarted signer never repeats a number). A verifier accepts, per stream, only
  sequences newer than the last accepted one, and only stamps within ``max_age_s`` of its clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import stat
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtl_split_core.errors import InputError

MIN_SECRET_BYTES = 32
TAG_BYTES = hashlib.sha256().digest_size  # 32
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# Field kinds of the canonical serialisation: scalars by struct format, arrays by numpy dtype
# (big-endian), strings as UTF-8 and byte sequences as they are.
_SCALARS = {"bool": ">?", "u8": ">B", "u32": ">I", "i32": ">i", "u64": ">Q", "f32": ">f",
            "f64": ">d"}
_ARRAYS = {"u8[]": ">u1", "u32[]": ">u4", "f32[]": ">f4", "f64[]": ">f8"}
KINDS = (*_SCALARS, *_ARRAYS, "str", "bytes")


class KeyFileError(InputError):
    """A key file that cannot be used (the message names the file and the problem)."""


class AuthRejected(Exception):
    """A message that failed authentication; ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class KeyRing:
    """Secrets by key id, in file order (the first one signs by default)."""

    keys: Mapping[str, bytes]
    # Things worth a warning that do not stop the node (e.g. group-readable file).
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def first_id(self) -> str:
        return next(iter(self.keys))


def parse_secret(text: str) -> bytes:
    """The bytes of a secret written as hex or ``base64:...``; raises ValueError."""
    try:
        if text.startswith("base64:"):
            return base64.b64decode(text[len("base64:"):], validate=True)
        return bytes.fromhex(text)
    except (ValueError, binascii.Error) as err:
        raise ValueError("secret must be hex, or base64 after 'base64:'") from err


def parse_keys(text: str, source: str = "key file") -> dict[str, bytes]:
    """``{key_id: secret}`` from key file text; raises KeyFileError naming ``source``."""
    keys: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key_id, sep, secret = (part.strip() for part in line.partition(":"))
        where = f"{source} line {number}"
        if not sep:
            raise KeyFileError(f"{where}: expected 'key_id: secret'")
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise KeyFileError(f"{where}: key id must be 1-64 of A-Z a-z 0-9 _ . -")
        if key_id in keys:
            raise KeyFileError(f"{where}: key id '{key_id}' appears twice")
        try:
            value = parse_secret(secret.strip("'\""))
        except ValueError as err:
            raise KeyFileError(f"{where}: {err}") from None
        if len(value) < MIN_SECRET_BYTES:
            raise KeyFileError(f"{where}: secret of '{key_id}' has {len(value)} bytes, "
                               f"at least {MIN_SECRET_BYTES} needed")
        keys[key_id] = value
    if not keys:
        raise KeyFileError(f"{source}: no keys (expected lines 'key_id: secret')")
    return keys


def load_key_file(path: str | os.PathLike[str]) -> KeyRing:
    """The keys in ``path``. Refuses a missing, unreadable, malformed or world-readable file;
    a group-readable one only gives a warning."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise KeyFileError(f"key file {p}: cannot read ({err.__class__.__name__}: "
                           f"{getattr(err, 'strerror', None) or err})") from None
    if mode & stat.S_IROTH:
        raise KeyFileError(f"key file {p} is readable by every user; run: chmod 600 {p}")
    warnings = (f"key file {p} is readable by its group; chmod 600 {p} is safer",) \
        if mode & stat.S_IRGRP else ()
    return KeyRing(parse_keys(text, f"key file {p}"), warnings)


def new_key_line(key_id: str, nbytes: int = MIN_SECRET_BYTES) -> str:
    """A key file line with a fresh random secret (hex)."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError(f"key id {key_id!r} must be 1-64 of A-Z a-z 0-9 _ . -")
    return f"{key_id}: {os.urandom(max(nbytes, MIN_SECRET_BYTES)).hex()}"


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def encode_value(kind: str, value: Any) -> bytes:
    """The canonical bytes of one value of ``kind`` (see ``KINDS``)."""
    if kind in _SCALARS:
        return struct.pack(_SCALARS[kind], value)
    if kind in _ARRAYS:
        return np.asarray(value).astype(_ARRAYS[kind]).tobytes()
    if kind == "str":
        return str(value).encode("utf-8")
    if kind == "bytes":
        return bytes(value)
    raise ValueError(f"unknown field kind {kind!r}")


def canonical_bytes(domain: str, fields: Iterable[tuple[str, str, Any]]) -> bytes:
    """Unambiguous bytes of ``(name, kind, value)`` fields under ``domain`` (a format name with
    version): every part is length-prefixed, so no field can spill into the next."""
    parts = [_lp(domain.encode())]
    for name, kind, value in fields:
        parts += [_lp(name.encode()), _lp(kind.encode()), _lp(encode_value(kind, value))]
    return b"".join(parts)


def compute_tag(secret: bytes, data: bytes) -> bytes:
    return hmac.new(secret, data, hashlib.sha256).digest()


class Signer:
    """Signs with one key of a ring; numbers messages from the wall clock in ns upwards."""

    def __init__(self, ring: KeyRing, key_id: str = "", first_sequence: int | None = None
                 ) -> None:
        self.key_id = key_id or ring.first_id
        if self.key_id not in ring.keys:
            raise KeyFileError(f"key id '{self.key_id}' is not in the key file "
                               f"(it has: {', '.join(ring.keys)})")
        self._secret = ring.keys[self.key_id]
        self._next = time.time_ns() if first_sequence is None else first_sequence
        self._lock = threading.Lock()

    def next_sequence(self) -> int:
        with self._lock:
            self._next += 1
            return self._next - 1

    def tag(self, data: bytes) -> bytes:
        return compute_tag(self._secret, data)


class Verifier:
    """Checks tags against every key of a ring, the stamp window and, per stream, the
    sequence. Thread-safe; remembers at most ``max_streams`` streams (oldest forgotten)."""

    def __init__(self, ring: KeyRing, max_age_s: float = 5.0, max_streams: int = 4096
                 ) -> None:
        self.keys = dict(ring.keys)
        self.max_age_ns = int(max_age_s * 1e9)  # 0: no stamp window
        self.max_streams = max_streams
        self._last: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._lock = threading.Lock()

    def secret(self, key_id: str, tag: bytes) -> bytes:
        """The secret of ``key_id``; AuthRejected auth_missing (no key id, no tag) or
        auth_unknown_key. Cheap: callers check this before building the signed bytes."""
        if not tag and not key_id:
            raise AuthRejected("auth_missing", "unsigned message (no auth_tag)")
        secret = self.keys.get(key_id)
        if secret is None:
            raise AuthRejected("auth_unknown_key", f"unknown key id {key_id[:64]!r}")
        return secret

    def verify(self, stream: tuple[str, ...], key_id: str, sequence: int, stamp_ns: int,
               now_ns: int, data: bytes, tag: bytes) -> None:
        """Accept (and remember ``sequence`` for ``stream`` + ``key_id``) or raise
        AuthRejected with reason auth_missing, auth_unknown_key, auth_forged, auth_stale or
        auth_replay. ``data`` must cover key id, sequence and stamp."""
        secret = self.secret(key_id, tag)
        if not hmac.compare_digest(compute_tag(secret, data), bytes(tag)):
            raise AuthRejected("auth_forged", f"tag does not match (key {key_id})")
        # Only a message with a valid tag gets this far: stamp and sequence are the signer's.
        age_ns = now_ns - stamp_ns
        if self.max_age_ns and abs(age_ns) > self.max_age_ns:
            raise AuthRejected("auth_stale", f"stamp {age_ns / 1e9:+.3f} s from this clock, "
                               f"window ±{self.max_age_ns / 1e9:g} s")
        state = (*stream, key_id)
        with self._lock:
            last = self._last.get(state)
            if last is not None and sequence <= last:
                raise AuthRejected("auth_replay", f"sequence {sequence} not newer than {last}")
            self._last[state] = sequence
            self._last.move_to_end(state)
            while len(self._last) > self.max_streams:
                self._last.popitem(last=False)
