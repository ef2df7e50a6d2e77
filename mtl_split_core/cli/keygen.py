"""`mtl-split keygen`: a key file (or one more key in one) for authenticated features."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mtl_split_core.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("key_file", type=Path, help="key file to create (mode 600), or with --append "
                   "to extend (key rotation: docs/SECURITY.md)")
    p.add_argument("--key-id", required=True, help="name of the new key, e.g. fleet-2026a "
                   "(1-64 of A-Z a-z 0-9 _ . -)")
    p.add_argument("--append", action="store_true",
                   help="add the key as the last line of an existing key file")


def run(args: argparse.Namespace) -> int:
    from mtl_split_core.auth import KEY_ID_PATTERN, load_key_file, new_key_line

    path: Path = args.key_file
    if not KEY_ID_PATTERN.fullmatch(args.key_id):
        raise InputError(f"--key-id {args.key_id!r}: expected 1-64 of A-Z a-z 0-9 _ . -")
    if args.append:
        if not path.is_file():
            raise InputError(f"{path}: no such key file to append to")
        if args.key_id in load_key_file(path).keys:  # also checks it is private, well formed
            raise InputError(f"{path}: already has a key {args.key_id!r}")
        text = path.read_text()
        lines = text + ("" if not text or text.endswith("\n") else "\n")
    else:
        if path.exists():
            raise InputError(f"{path}: exists; use --append to add a key to it")
        lines = ""
    # Written to a private temporary file and renamed over the target: never readable by
    # others, never half-written.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(lines + new_key_line(args.key_id) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"{'added key' if args.append else 'wrote key'} {args.key_id!r} to {path} (mode 600); "
          "copy it to the robots and the server over a secure channel")
    return 0
