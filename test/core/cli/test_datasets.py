"""``--data`` values and ``--class-map`` files -> ``load_sources``, errors as one line."""

import json
from pathlib import Path

import numpy as np
import pytest

from mtl_split_core.cli.datasets import data_spec, load_data_args, read_class_map
from mtl_split_core.data.sources import SourceError
from mtl_split_core.errors import InputError
from support.data_layouts import write_coco, write_folder


def test_a_bare_path_is_sim_data_and_a_prefix_names_the_format():
    assert (data_spec("runs/ds").format, data_spec("runs/ds").path) == ("sim", Path("runs/ds"))
    assert data_spec("/d/x@y").path == Path("/d/x@y")        # a bare path is taken literally
    spec = data_spec("coco:/d/coco@0.3?background=ignore")
    assert (spec.format, spec.weight, dict(spec.options)) == ("coco", 0.3,
                                                              {"background": "ignore"})
    with pytest.raises(SourceError, match="unknown format 'cocoa'"):
        data_spec("cocoa:/d")


def test_class_map_files_are_checked(tmp_path):
    good = tmp_path / "map.json"
    good.write_text(json.dumps({"duck": "toy", "teddy": None}))
    assert read_class_map(good) == {"duck": "toy", "teddy": None}
    for text, expected in (("[1]", "expected a JSON object"), ('{"a": 3}', "expected a JSON"),
                           ("{", "cannot read JSON")):
        good.write_text(text)
        with pytest.raises(InputError, match=expected):
            read_class_map(good)
    with pytest.raises(InputError, match="nope.json: cannot read"):
        read_class_map(tmp_path / "nope.json")


def test_several_sources_with_a_class_map(tmp_path, capsys):
    from mtl_split_core.sim.scene import SimScene

    with SimScene(3, 96, 72) as scene:
        frames = [scene.render() for _ in range(2)]
    write_folder(tmp_path / "f", frames)
    write_coco(tmp_path / "c", frames[:1])
    (tmp_path / "map.json").write_text(json.dumps({"duck": None}))
    # A bare path is sim data: a folder in our own format needs its prefix.
    with pytest.raises(SourceError, match="this is a folder data set.*name it folder:"):
        load_data_args([str(tmp_path / "f")], "train", (48, 36))
    loaded = load_data_args([f"folder:{tmp_path / 'f'}", f"coco:{tmp_path / 'c'}@2"], "train",
                            (48, 36), class_map_path=tmp_path / "map.json")
    assert "duck" not in loaded.detection_classes
    data = loaded.data.to_dict()
    assert data["images"].shape == (3, 36, 48, 3)
    np.testing.assert_allclose(data["sample_weight"], [0.5, 0.5, 2.0])
    out = capsys.readouterr().out
    assert f"train: data folder:{tmp_path / 'f'}: 2 frames" in out
