"""The seam every source shares: the hash split and the FORMAT:PATH spec."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mtl_split_core.data.sources import DataSpec, SourceError, source_formats, split_of


def test_split_of_is_stable_across_processes_and_80_10_10():
    names = [f"frame_{i:05d}" for i in range(4000)]
    here = [split_of(n) for n in names[:50]]
    code = ("from mtl_split_core.data.sources import split_of; "
            "print(','.join(split_of(f'frame_{i:05d}') for i in range(50)))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # the builtin hash() would differ
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True).stdout.strip().split(",")
    assert here == there
    counts = Counter(split_of(n) for n in names)
    assert set(counts) == {"train", "val", "test"}
    assert counts["train"] / len(names) == pytest.approx(0.8, abs=0.03)
    assert counts["val"] / len(names) == pytest.approx(0.1, abs=0.02)
    assert counts["test"] / len(names) == pytest.approx(0.1, abs=0.02)


def test_every_format_of_this_package_is_registered():
    assert {"sim", "folder", "coco"} <= set(source_formats())


def test_spec_parses_weight_and_options():
    spec = DataSpec.parse("coco:/d/coco@0.3?ann=instances_val2017.json&split=all")
    assert (spec.format, spec.path, spec.weight) == ("coco", Path("/d/coco"), 0.3)
    assert dict(spec.options) == {"ann": "instances_val2017.json", "split": "all"}
    assert DataSpec.parse("sim:rel/dir").weight == 1.0


@pytest.mark.parametrize("text, expected", [
    ("nosuch:/d", "unknown format 'nosuch'"),
    ("coco:/d@-1", "weight '-1' must be a positive number"),
    ("coco:/d@x", "weight 'x'"),
    ("coco:", "expected FORMAT:PATH"),
    ("coco:/d?ann", "not key=value"),
])
def test_bad_specs_are_one_line_errors(text, expected):
    with pytest.raises(SourceError, match=expected) as err:
        DataSpec.parse(text)
    assert "\n" not in str(err.value)


def test_a_missing_path_is_named(tmp_path):
    with pytest.raises(SourceError, match=f"folder:{tmp_path / 'nope'}: no such file"):
        DataSpec.parse(f"folder:{tmp_path / 'nope'}").open("train")


def test_an_unknown_split_is_refused(tmp_path):
    with pytest.raises(SourceError, match="split 'dev'"):
        DataSpec.parse(f"sim:{tmp_path}").open("dev")
