"""``sim``: gen-data folders and shards read through the source give today's frames."""

import numpy as np
import pytest

from mtl_split_core.classes import DETECTION_CLASSES, SEGMENTATION_CLASSES
from mtl_split_core.data.dataset import load_dataset
from mtl_split_core.data.shards import pack_shards
from mtl_split_core.data.sources import DataSpec, SourceError


@pytest.fixture(scope="module")
def sim_dirs(tmp_path_factory):
    from mtl_split_core.sim.generate import generate_dataset

    root = tmp_path_factory.mktemp("sim")
    # One frame per scene and 12 scenes: every split gets frames (scene hash 80/10/10).
    index = generate_dataset(root / "ds", frames=12, size=(64, 48), frames_per_scene=1,
                             workers=1, progress=False, split_fractions=(0.5, 0.25, 0.25))
    assert {img["split"] for img in index["images"]} == {"train", "val", "test"}
    assert len(pack_shards(root / "ds", root / "sh", max_mb=0.01)) >= 3  # a few frames per shard
    return root / "ds", root / "sh"


@pytest.mark.parametrize("form", [0, 1], ids=["folder", "shards"])
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_samples_are_the_loaders_frames(sim_dirs, form, split):
    root = sim_dirs[form]
    src = DataSpec.parse(f"sim:{root}").open(split)
    ref = load_dataset(root, (split,))
    samples = list(src)
    assert len(src) == len(samples) == len(ref["images"]) > 0
    assert src.detection_classes == DETECTION_CLASSES
    assert src.segmentation_classes == SEGMENTATION_CLASSES
    for i, s in enumerate(samples):
        assert s.labelled == {"detection", "segmentation", "depth"}
        np.testing.assert_array_equal(s.image, ref["images"][i])
        np.testing.assert_array_equal(s.semantic, ref["seg"][i])
        np.testing.assert_array_equal(s.depth, ref["depth"][i])
        np.testing.assert_array_equal(s.boxes, ref["boxes"][i])
        np.testing.assert_array_equal(s.classes, ref["labels"][i])
        np.testing.assert_array_equal(s.k.reshape(9), np.asarray(ref["k"][i]))
    if form == 0:
        assert all(s.name.startswith("s0") for s in samples)


def test_a_folder_without_index_or_shards_is_named(tmp_path):
    with pytest.raises(SourceError, match=f"sim:{tmp_path}: expected index.json"):
        DataSpec.parse(f"sim:{tmp_path}").open("train")


def test_a_broken_shard_is_named(tmp_path):
    (tmp_path / "shard_000.npz").write_bytes(b"not a zip")
    with pytest.raises(SourceError, match="shard_000.npz: not a dataset shard"):
        DataSpec.parse(f"sim:{tmp_path}").open("train")


def test_a_missing_frame_file_is_named(sim_dirs, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(sim_dirs[0], root)
    src = DataSpec.parse(f"sim:{root}").open("train")
    victim = root / "seg" / f"{next(iter(src)).name}.png"
    victim.unlink()
    with pytest.raises(SourceError, match=victim.name):
        list(src)


def test_options_are_refused(sim_dirs):
    with pytest.raises(SourceError, match="unknown option"):
        DataSpec.parse(f"sim:{sim_dirs[0]}?x=1").open("train")
