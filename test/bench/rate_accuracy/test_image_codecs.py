"""bench/rate_accuracy/image_codecs.py: each codec round-trips a photo; bytes rise with quality."""

import numpy as np
import pytest
from image_codecs import IMAGE_CODECS, LOSSLESS, available_codecs


@pytest.fixture(scope="module")
def photo():
    from skimage import data  # a real photo: sim renders are too flat to rank qualities

    return np.ascontiguousarray(data.astronaut()[::2, ::2][8:248, :])  # 240x256 RGB


def test_the_four_codecs_of_the_benchmark_are_available_here():
    # requirements.txt pins Pillow (WebP, AVIF built in) and pillow-jxl-plugin.
    assert set(available_codecs()) == {"jpeg", "webp", "avif", "jxl"}


@pytest.mark.parametrize("name", sorted(IMAGE_CODECS))
def test_lossy_codec_round_trips_and_bytes_grow_with_quality(name, photo):
    codec = IMAGE_CODECS[name]
    assert len(codec.qualities) >= 8
    sizes, errors = [], []
    for q in codec.qualities:
        data = codec.encode(photo, q)
        out = codec.decode(data)
        assert out.shape == photo.shape and out.dtype == np.uint8
        sizes.append(len(data))
        errors.append(np.abs(out.astype(int) - photo).mean())
    assert errors[-1] < 4.0, f"{name} q{codec.qualities[-1]}: mean error {errors[-1]:.1f}"
    # Monotone-ish: each step at most 3% below the previous one, and the sweep spans > 2x.
    assert all(b >= 0.97 * a for a, b in zip(sizes, sizes[1:])), sizes
    assert sizes[-1] > 2 * sizes[0], sizes
    assert errors[-1] < errors[0]


@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_lossless_codec_round_trips_exactly(name, photo):
    codec = LOSSLESS[name]
    assert np.array_equal(codec.decode(codec.encode(photo)), photo)
