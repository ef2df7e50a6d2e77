"""Read a large JSON object member by member, list elements one at a time, with each
element's byte range in the file: a COCO annotation file (450 MB for train2017) is indexed
without holding it, and one element is read back later by seeking to its range.

The file is decoded as Latin-1 so that character offsets are byte offsets; ASCII structure
(keys, numbers, brackets) reads the same, and an element whose strings matter is decoded
properly from its bytes (``element_bytes`` + ``json.loads``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20
LIST = object()  # ``members`` yields it as the value when a list member begins
_WHITESPACE = " \t\r\n"


class JsonStreamError(ValueError):
    """Not a JSON object of the expected shape; the message says where."""


class _Reader:
    def __init__(self, f: BinaryIO) -> None:
        self.f, self.buf, self.base, self.pos, self.eof = f, "", 0, 0, False
        self.decoder = json.JSONDecoder()

    def _more(self) -> bool:
        if self.eof:
            return False
        data = self.f.read(CHUNK)
        if not data:
            self.eof = True
            return False
        if self.pos > CHUNK:  # drop what was consumed
            self.base += self.pos
            self.buf, self.pos = self.buf[self.pos:], 0
        self.buf += data.decode("latin-1")
        return True

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf) or not self._more():
                return self.buf[self.pos:self.pos + 1]

    def expect(self, chars: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            raise JsonStreamError(f"expected {' or '.join(repr(x) for x in chars)} at byte "
                                  f"{self.base + self.pos}, found {c or 'the end'!r}")
        self.pos += 1
        return c

    def value(self) -> tuple[Any, int, int]:
        """The next value, and its byte range [start, end)."""
        self.peek()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                # Incomplete in the buffer: read on; at the end of the file it is invalid.
                if self._more():
                    continue
                raise JsonStreamError(f"invalid JSON at byte {self.base + err.pos}: "
                                      f"{err.msg}") from None
            # A number at the buffer's end may continue in the next chunk.
            if end == len(self.buf) and not self.eof and self._more():
                continue
            start, self.pos = self.base + self.pos, end
            return obj, start, self.base + end


def members(path: Path) -> Iterator[tuple[str, Any, int, int]]:
    """(key, value, start, end) of a JSON object file's members; a list value is given as
    ``LIST`` and then one element at a time (key, element, its byte range), every other value
    whole."""
    with open(path, "rb") as f:
        r = _Reader(f)
        r.expect("{")
        if r.peek() == "}":
            return
        while True:
            key, _, _ = r.value()
            if not isinstance(key, str):
                raise JsonStreamError(f"expected a member name at byte {r.base + r.pos}")
            r.expect(":")
            if r.peek() == "[":
                yield key, LIST, r.base + r.pos, r.base + r.pos
                r.pos += 1
                if r.peek() == "]":
                    r.pos += 1
                else:
                    while True:
                        yield (key, *r.value())
                        if r.expect(",]") == "]":
                            break
            else:
                yield (key, *r.value())
            if r.expect(",}") == "}":
                return


def element_bytes(f: BinaryIO, start: int, end: int) -> bytes:
    """The bytes of one element (a range ``members`` gave) of the open file ``f``."""
    f.seek(start)
    return f.read(end - start)
