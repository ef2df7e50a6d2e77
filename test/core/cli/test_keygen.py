"""`mtl-split keygen`: private key files the nodes accept, rotation by --append, one-line errors."""

import stat

import pytest

from mtl_split_core.auth import load_key_file
from mtl_split_core.cli.main import main


def test_a_new_key_file_is_private_and_loads(tmp_path, capsys):
    path = tmp_path / "keys" / "features.key"
    assert main(["keygen", str(path), "--key-id", "fleet-a"]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = load_key_file(path)
    assert list(ring.keys) == ["fleet-a"] and len(ring.keys["fleet-a"]) >= 32
    assert not ring.warnings
    assert "wrote key 'fleet-a'" in capsys.readouterr().out


def test_append_adds_a_second_key_for_rotation(tmp_path):
    path = tmp_path / "features.key"
    assert main(["keygen", str(path), "--key-id", "old"]) == 0
    first = load_key_file(path).keys["old"]
    assert main(["keygen", str(path), "--key-id", "new", "--append"]) == 0
    ring = load_key_file(path)
    assert list(ring.keys) == ["old", "new"] and ring.keys["old"] == first
    assert ring.keys["new"] != first
    assert [p.name for p in tmp_path.iterdir()] == ["features.key"]  # no temporary left


@pytest.mark.parametrize("setup, argv, message", [
    (None, ["--key-id", "bad id"], "--key-id 'bad id': expected 1-64"),
    ("exists", ["--key-id", "k2"], "exists; use --append"),
    (None, ["--key-id", "k", "--append"], "no such key file to append to"),
    ("exists", ["--key-id", "k1", "--append"], "already has a key 'k1'"),
])
def test_bad_requests_are_one_line_and_exit_2(tmp_path, capsys, setup, argv, message):
    path = tmp_path / "features.key"
    if setup:
        assert main(["keygen", str(path), "--key-id", "k1"]) == 0
        before = path.read_bytes()
    capsys.readouterr()
    assert main(["keygen", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    if setup:
        assert path.read_bytes() == before
