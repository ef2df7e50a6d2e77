"""atomic_folder: a folder appears whole or not at all."""

import pytest

from mtl_split_core.errors import InputError
from mtl_split_core.output_folder import atomic_folder


def test_the_folder_appears_only_when_the_work_is_done(tmp_path):
    target = tmp_path / "out"
    with atomic_folder(target) as work:
        (work / "a.txt").write_text("a")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_empty_existing_folder_is_filled(tmp_path):
    (tmp_path / "out").mkdir()
    with atomic_folder(tmp_path / "out") as work:
        (work / "b").write_text("b")
    assert (tmp_path / "out" / "b").exists()


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_failure_or_interrupt_leaves_nothing(tmp_path, error):
    with pytest.raises(error), atomic_folder(tmp_path / "out") as work:
        (work / "half").write_text("x")
        raise error()
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_folder_is_refused_before_any_work(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("mine")
    with pytest.raises(InputError, match="exists and is not an empty folder"), \
            atomic_folder(tmp_path / "out"):
        pytest.fail("must not start")
    assert (tmp_path / "out" / "keep").read_text() == "mine"
