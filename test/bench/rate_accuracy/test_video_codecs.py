"""bench/rate_accuracy/video_codecs.py: low-latency streams decode to every frame; keyframes
come at the stated interval; bytes fall as the CRF rises."""

import numpy as np
import pytest
from video_codecs import VIDEO_CODECS, available_codecs


@pytest.fixture(scope="module")
def frames():
    from skimage import data

    photo = data.astronaut()[::2, ::2][:240, :]  # 240x256: a real texture, panned 2 px/frame
    return np.stack([np.ascontiguousarray(np.roll(photo, 2 * i, axis=1)) for i in range(7)])


def test_h264_and_h265_are_available_here():
    assert set(available_codecs()) == {"h264", "h265"}


@pytest.mark.parametrize("name", sorted(VIDEO_CODECS))
def test_stream_round_trips_with_keyframes_at_the_interval(name, frames):
    codec = VIDEO_CODECS[name]
    opts = codec.options(30, 3)
    assert opts["bf"] == "0" and opts["tune"] == "zerolatency" and opts["g"] == "3"
    sizes = {}
    for crf in (20, 40):
        decoded, nbytes, keyframes = codec.code(frames, crf, keyint=3)
        assert decoded.shape == frames.shape and decoded.dtype == np.uint8
        assert len(nbytes) == len(frames) and min(nbytes) > 0
        assert keyframes == [0, 3, 6]
        # P-frames of a slow pan cost less than the keyframes.
        assert max(nbytes[1], nbytes[2]) < nbytes[0]
        sizes[crf] = sum(nbytes)
        err = np.abs(decoded.astype(int) - frames).mean()
        assert err < (6 if crf == 20 else 20), f"{name} crf {crf}: mean error {err:.1f}"
    assert sizes[40] < sizes[20] / 2
