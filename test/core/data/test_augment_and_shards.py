"""Augmentation keeps image, boxes, segmentation and depth aligned; shards round-trip."""

import numpy as np
import torch

from mtl_split_core.data.augment import augment_batch, hflip, zoom_crop
from mtl_split_core.data.shards import code_to_depth, depth_to_code


def _sample():
    seg = torch.zeros(1, 48, 64, dtype=torch.uint8)
    seg[0, 10:20, 5:25] = 4                       # an object of class 4 where its box is
    depth = torch.full((1, 48, 64), 10.0)
    depth[0, 10:20, 5:25] = 2.0
    img = torch.zeros(1, 3, 48, 64)
    img[:, :, 10:20, 5:25] = 1.0
    return img, seg, depth, [torch.tensor([[5.0, 10.0, 25.0, 20.0]])]


def _aligned(img, seg, depth, boxes):
    x1, y1, x2, y2 = (int(round(float(v))) for v in boxes[0][0])
    inside = seg[0, y1:y2, x1:x2]
    return inside.numel() > 0 and (inside == 4).float().mean() > 0.9 and \
        (depth[0, y1:y2, x1:x2] == 2.0).float().mean() > 0.9 and \
        img[0, 0, y1:y2, x1:x2].mean() > 0.9


def test_flip_keeps_alignment_and_twice_is_identity():
    img, seg, depth, boxes = _sample()
    flip = torch.tensor([True])
    f = hflip(img, seg, depth, boxes, flip)
    assert _aligned(*f)
    back = hflip(*f, flip)
    assert torch.equal(back[0], img) and torch.equal(back[1], seg)
    assert torch.equal(back[3][0], boxes[0])


def test_zoom_crop_keeps_alignment():
    img, seg, depth, boxes = _sample()
    z = zoom_crop(img, seg, depth, boxes, torch.tensor([1.5]), torch.tensor([[0.3, 0.3]]))
    assert _aligned(*z)
    assert set(torch.unique(z[1]).tolist()) <= {0, 4}  # nearest: no invented classes


def test_random_batches_stay_aligned():
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        img, seg, depth, boxes = _sample()
        out = augment_batch(img, seg, depth, boxes, [torch.tensor([4])], generator=g)
        assert 1.0 <= float(out[5][0]) <= 1.5  # the zoom applied
        if len(out[3][0]):
            assert _aligned(out[0].clamp(0, 1) * 0 + (out[1] == 4).float()[:, None].expand(
                1, 3, 48, 64), out[1], out[2], out[3])


def test_depth_code_round_trip_within_a_step():
    depth = np.array([[0.0, 0.1, 1.0, 7.3, 80.0]], np.float32)
    back = code_to_depth(depth_to_code(depth))
    assert back[0, 0] == 0.0
    assert np.allclose(back[0, 1:], depth[0, 1:], rtol=0.014)


def test_folder_and_shards_load_the_same_frames(tmp_path):
    from mtl_split_core.data.dataset import load_dataset
    from mtl_split_core.data.shards import pack_shards
    from mtl_split_core.sim.generate import generate_dataset
    generate_dataset(tmp_path / "ds", frames=4, size=(64, 48), frames_per_scene=2, workers=1,
                     progress=False)
    pack_shards(tmp_path / "ds", tmp_path / "sh", max_mb=0.01)  # several tiny shards
    splits = ("train", "val", "test")
    a, b = load_dataset(tmp_path / "ds", splits), load_dataset(tmp_path / "sh", splits)
    assert len(a["images"]) == len(b["images"]) == 4
    assert np.array_equal(a["seg"], b["seg"])
    valid = a["depth"] > 0.1
    assert np.allclose(a["depth"][valid], b["depth"][valid], rtol=0.014)
    assert all(np.array_equal(x, y) for x, y in zip(a["boxes"], b["boxes"]))
    assert np.abs(a["images"].astype(int) - b["images"].astype(int)).mean() < 3  # JPEG q90


def test_a_subset_of_shards_holds_one_splits_frames_byte_for_byte(tmp_path):
    from mtl_split_core.data.dataset import load_dataset
    from mtl_split_core.data.shards import pack_shards, subset_shards
    from mtl_split_core.sim.generate import generate_dataset
    generate_dataset(tmp_path / "ds", frames=20, size=(64, 48), frames_per_scene=2, workers=1,
                     progress=False, split_fractions=(0.5, 0.5, 0.0))
    pack_shards(tmp_path / "ds", tmp_path / "sh", max_mb=0.01)
    full = load_dataset(tmp_path / "sh", ("train",))
    assert subset_shards(tmp_path / "sh", tmp_path / "sub", "train") == len(full["images"]) > 0
    sub = load_dataset(tmp_path / "sub", ("train",))
    assert np.array_equal(full["images"], sub["images"])  # not re-encoded
    assert np.array_equal(full["seg"], sub["seg"]) and np.array_equal(full["depth"], sub["depth"])
    assert all(np.array_equal(x, y) for x, y in zip(full["boxes"], sub["boxes"]))
    assert subset_shards(tmp_path / "sh", tmp_path / "two", "train", frames=2) == 2


def test_sensor_noise_has_the_asked_strength_and_spares_the_rest():
    from mtl_split_core.data.augment import sensor_noise
    g = torch.Generator().manual_seed(0)
    images = torch.full((64, 3, 32, 32), 0.5)
    noisy = sensor_noise(images, max_sigma=0.02, p=0.5, generator=g)
    std = (noisy - images).flatten(1).std(1)
    untouched = std == 0
    assert 16 < int(untouched.sum()) < 48           # about half the samples
    assert float(std.max()) <= 0.02 * 1.1           # never stronger than asked
    assert float(std[~untouched].mean()) > 0.005    # and really there where applied
    assert torch.equal(sensor_noise(images, p=0.0, generator=g), images)
    assert sensor_noise(torch.ones(2, 3, 8, 8), max_sigma=0.5, p=1.0, generator=g).max() <= 1.0
