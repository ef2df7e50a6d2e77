"""Key files, canonical bytes, HMAC tags, rotation, replay and stamp window (no ROS)."""

import base64
import os

import pytest

from mtl_split_core.auth import (
    KINDS,
    AuthRejected,
    KeyFileError,
    KeyRing,
    Signer,
    Verifier,
    canonical_bytes,
    load_key_file,
    new_key_line,
    parse_keys,
)
from mtl_split_core.errors import InputError

K1 = bytes(range(32))
K2 = bytes(range(100, 140))
NOW = 1_700_000_000 * 10**9
STREAM = ("robot1/mtl_split/features", "camera")


def _fields(**override):
    fields = {"stamp": ("i32", 5), "frame_id": ("str", "camera"), "scale": ("f32[]", [1.0, 2.0]),
              "data": ("bytes", b"\x00\x01\x02"), "shape": ("u32[]", [8, 3, 4]),
              "edge_ms": ("f32", 1.5), "flag": ("bool", True), "k": ("f64[]", [1.0] * 9),
              "seq": ("u64", 2**63 + 5), "idx": ("u8", 2)}
    fields.update(override)
    return [(name, kind, value) for name, (kind, value) in fields.items()]


def _write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_canonical_bytes_change_with_every_field_and_are_unambiguous():
    base = canonical_bytes("d/1", _fields())
    assert base == canonical_bytes("d/1", _fields())  # deterministic
    changed = {"stamp": ("i32", 6), "frame_id": ("str", "camerb"), "scale": ("f32[]", [1.0, 2.5]),
               "data": ("bytes", b"\x00\x01\x03"), "shape": ("u32[]", [8, 3, 5]),
               "edge_ms": ("f32", 1.25), "flag": ("bool", False), "k": ("f64[]", [1.0] * 8 + [2]),
               "seq": ("u64", 2**63 + 6), "idx": ("u8", 3)}
    for name, value in changed.items():
        assert canonical_bytes("d/1", _fields(**{name: value})) != base, name
    assert canonical_bytes("d/2", _fields()) != base
    # Moving bytes between neighbouring fields must change the result (length prefixes).
    a = canonical_bytes("d", [("a", "str", "xy"), ("b", "str", "z")])
    b = canonical_bytes("d", [("a", "str", "x"), ("b", "str", "yz")])
    assert a != b
    assert canonical_bytes("d", [("a", "bytes", b"")]) != canonical_bytes("d", [])
    assert set(KINDS) >= {"str", "bytes", "u64", "f32[]"}
    with pytest.raises(ValueError, match="unknown field kind"):
        canonical_bytes("d", [("a", "complex", 1j)])


def test_sign_and_verify_round_trip_and_tamper():
    ring = KeyRing({"k1": K1})
    signer, verifier = Signer(ring, first_sequence=10), Verifier(ring)
    seq = signer.next_sequence()
    data = canonical_bytes("d", _fields(seq=("u64", seq)))
    tag = signer.tag(data)
    assert len(tag) == 32
    verifier.verify(STREAM, "k1", seq, NOW, NOW, data, tag)
    seq = signer.next_sequence()
    data = canonical_bytes("d", _fields(seq=("u64", seq)))
    tag = signer.tag(data)
    for bad_tag in (tag[:-1] + bytes([tag[-1] ^ 1]), tag[:16], tag + b"\x00"):
        with pytest.raises(AuthRejected) as err:
            verifier.verify(STREAM, "k1", seq, NOW, NOW, data, bad_tag)
        assert err.value.reason == "auth_forged"
    with pytest.raises(AuthRejected) as err:  # data changed after signing
        verifier.verify(STREAM, "k1", seq, NOW, NOW, data[:-1] + b"\x09", tag)
    assert err.value.reason == "auth_forged"
    verifier.verify(STREAM, "k1", seq, NOW, NOW, data, tag)  # the forgeries did not consume it


def test_missing_unknown_key_and_other_ring_rejected():
    verifier = Verifier(KeyRing({"k1": K1}))
    with pytest.raises(AuthRejected) as err:
        verifier.verify(STREAM, "", 0, NOW, NOW, b"x", b"")
    assert err.value.reason == "auth_missing"
    other = Signer(KeyRing({"k9": K2}))
    with pytest.raises(AuthRejected) as err:
        verifier.verify(STREAM, "k9", 1, NOW, NOW, b"x", other.tag(b"x"))
    assert err.value.reason == "auth_unknown_key"
    # Same key id, another secret: forged.
    impostor = Signer(KeyRing({"k1": K2}))
    with pytest.raises(AuthRejected) as err:
        verifier.verify(STREAM, "k1", 1, NOW, NOW, b"x", impostor.tag(b"x"))
    assert err.value.reason == "auth_forged"


def test_rotation_two_keys_accepted_at_once():
    verifier = Verifier(KeyRing({"old": K1, "new": K2}))
    for key_id in ("old", "new"):
        signer = Signer(KeyRing({"old": K1, "new": K2}), key_id)
        assert signer.key_id == key_id
        seq = signer.next_sequence()
        verifier.verify(STREAM, key_id, seq, NOW, NOW, b"m", signer.tag(b"m"))
    assert Signer(KeyRing({"old": K1, "new": K2})).key_id == "old"  # first signs by default
    with pytest.raises(KeyFileError, match="'nope' is not in the key file"):
        Signer(KeyRing({"old": K1}), "nope")


def test_replay_per_stream_and_sequences_from_the_wall_clock():
    ring = KeyRing({"k1": K1})
    verifier = Verifier(ring)
    signer = Signer(ring)
    first = signer.next_sequence()
    assert abs(first - NOW) > 0 and first > 1_600_000_000 * 10**9  # wall clock in ns
    assert signer.next_sequence() == first + 1
    tag = signer.tag(b"m")
    verifier.verify(STREAM, "k1", first, NOW, NOW, b"m", tag)
    for seq in (first, first - 1):
        with pytest.raises(AuthRejected) as err:
            verifier.verify(STREAM, "k1", seq, NOW, NOW, b"m", tag)
        assert err.value.reason == "auth_replay"
    # Another robot/camera has its own counter; a restarted signer starts above the old one.
    verifier.verify(("robot2/mtl_split/features", "camera"), "k1", first, NOW, NOW, b"m", tag)
    restarted = Signer(ring)
    assert restarted.next_sequence() > first + 1


def test_stamp_window():
    ring = KeyRing({"k1": K1})
    tag = Signer(ring).tag(b"m")
    verifier = Verifier(ring, max_age_s=5.0)
    verifier.verify(STREAM, "k1", 1, NOW - 4 * 10**9, NOW, b"m", tag)
    verifier.verify(STREAM, "k1", 2, NOW + 4 * 10**9, NOW, b"m", tag)
    for offset in (-6, 6, -10**6):
        with pytest.raises(AuthRejected) as err:
            verifier.verify(STREAM, "k1", 3, NOW + offset * 10**9, NOW, b"m", tag)
        assert err.value.reason == "auth_stale"
    Verifier(ring, max_age_s=0).verify(STREAM, "k1", 3, 0, NOW, b"m", tag)  # window off


def test_stream_memory_is_bounded():
    ring = KeyRing({"k1": K1})
    tag = Signer(ring).tag(b"m")
    verifier = Verifier(ring, max_streams=3)
    for i in range(10):
        verifier.verify(("t", f"frame{i}"), "k1", 1, NOW, NOW, b"m", tag)
    assert len(verifier._last) == 3


def test_key_file_formats(tmp_path):
    b64 = base64.b64encode(K2).decode()
    path = _write(tmp_path / "keys", f"# comment\n\nk1: {K1.hex()}  # first\n"
                                    f"k-2.b: 'base64:{b64}'\n")
    ring = load_key_file(path)
    assert ring.keys == {"k1": K1, "k-2.b": K2} and ring.first_id == "k1"
    assert ring.warnings == ()
    line = new_key_line("fresh")
    assert parse_keys(line)["fresh"] != parse_keys(new_key_line("fresh"))["fresh"]
    assert len(parse_keys(line)["fresh"]) == 32


@pytest.mark.parametrize("text, message", [
    ("", "no keys"),
    ("# only a comment\n", "no keys"),
    ("k1 " + "00" * 32, "expected 'key_id: secret'"),
    ("k1: " + "00" * 31, "has 31 bytes, at least 32"),
    ("k1: zz" + "00" * 32, "secret must be hex"),
    ("k1: base64:!!!", "secret must be hex"),
    ("k 1: " + "00" * 32, "key id must be"),
    (": " + "00" * 32, "key id must be"),
    ("k1: " + "00" * 32 + "\nk1: " + "11" * 32, "appears twice"),
])
def test_bad_key_files_are_refused_with_the_reason(tmp_path, text, message):
    path = _write(tmp_path / "keys", text)
    with pytest.raises(KeyFileError, match=message) as err:
        load_key_file(path)
    assert str(path) in str(err.value) and isinstance(err.value, InputError)


def test_key_file_permissions_and_missing(tmp_path):
    text = "k1: " + K1.hex()
    with pytest.raises(KeyFileError, match="readable by every user; run: chmod 600"):
        load_key_file(_write(tmp_path / "world", text, 0o644))
    ring = load_key_file(_write(tmp_path / "group", text, 0o640))
    assert ring.keys == {"k1": K1} and "readable by its group" in ring.warnings[0]
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_file(tmp_path / "absent")
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_file(tmp_path)  # a directory
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    os.chmod(binary, 0o600)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_file(binary)
