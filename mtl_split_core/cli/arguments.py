"""Argument types shared by several commands (argparse turns their errors into usage + exit 2)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mtl_split_core.errors import InputError
from mtl_split_core.output_folder import check_can_create

Number = TypeVar("Number", int, float)


def image_size(text: str) -> tuple[int, int]:
    """'320x240' -> (320, 240)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or not int(match.group(1)) or not int(match.group(2)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT like 320x240")
    return int(match.group(1)), int(match.group(2))


def _number(parse: Callable[[str], Number], ok: Callable[[Number], bool], expected: str,
            name: str) -> Callable[[str], Number]:
    """An argparse ``type``: ``parse`` the text, then require ``ok(value)``; the message says
    what was ``expected``."""
    def convert(text: str) -> Number:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text}: expected {expected}")
        return value
    convert.__name__ = name
    return convert


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1", "positive_int")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0", "non_negative_int")
positive_float = _number(float, lambda v: 0 < v < math.inf, "a number > 0", "positive_float")
non_negative_float = _number(float, lambda v: 0 <= v < math.inf, "a number >= 0",
                             "non_negative_float")
# A probability or score threshold.
unit_interval = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]", "unit_interval")


def output_file(text: str) -> str:
    """A file path whose nearest existing folder takes new files."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder; expected a file name")
    try:
        check_can_create(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def output_folder(text: str) -> str:
    """A folder path this command can create or write into."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    try:
        check_can_create(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def temporal_codec_ids(text: str) -> list[str]:
    """Comma-separated temporal codec ids, each parsed (``temporal_codec.parse_temporal``)."""
    from mtl_split_core.codec import CodecError
    from mtl_split_core.temporal_codec import parse_temporal

    codecs = [c.strip() for c in text.split(",") if c.strip()]
    if not codecs:
        raise argparse.ArgumentTypeError("expected one or more temporal codec ids")
    for codec in codecs:
        try:
            parse_temporal(codec)
        except CodecError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return codecs
