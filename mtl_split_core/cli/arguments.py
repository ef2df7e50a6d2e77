"""Argument types shared by several commands (argparse turns their errors into usage + exit 2)."""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from mtl_split_core.errors import InputError


def image_size(text: str) -> tuple[int, int]:
    """'320x240' -> (320, 240)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or not int(match.group(1)) or not int(match.group(2)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT like 320x240")
    return int(match.group(1)), int(match.group(2))


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected an integer >= 1")
    return value


def non_negative_float(text: str) -> float:
    """A finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number >= 0") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text}: expected a number >= 0")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1] (a probability or score threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number in [0, 1]") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a number in [0, 1]")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 0") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: expected an integer >= 0")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number > 0") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text}: expected a number > 0")
    return value


def check_can_create(path: str | Path) -> None:
    """Raise InputError unless a file or folder can be made at ``path`` (checked before a
    command starts work, so a bad output path fails at once and leaves nothing behind)."""
    path = Path(path)
    existing = path if path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    try:  # a real write: os.access says yes to root even on a read-only file system
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise InputError(f"{path}: cannot write there ({existing}: "
                         f"{err.strerror or err})") from None


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
