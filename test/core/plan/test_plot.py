"""The planner's figure is drawn from two profiles and written as a PNG."""

import cv2

from mtl_split_core.plan.plot import plot_plan
from mtl_split_core.plan.profile import PROFILE_VERSION

CODECS = ("f16-zstd/1", "q8-zstd/1", "q4-zstd/1")


def _profile(scale):
    def split(edge, server, nbytes):
        return {"edge_ms": edge * scale, "server_ms": server * scale, "shape": [1, 1, 1],
                "codecs": {c: {"bytes": nbytes, "encode_ms": 1.0, "decode_ms": 0.5}
                           for c in CODECS}}
    return {"version": PROFILE_VERSION, "device": "synthetic", "whole_ms": 40.0 * scale,
            "jpeg": {"bytes": 50_000, "encode_ms": 2.0, "decode_ms": 1.0},
            "splits": {"s8": split(10.0, 30.0, 20_000), "s16": split(25.0, 15.0, 2_000)}}


def test_plot_writes_a_two_panel_png(tmp_path):
    path = tmp_path / "plan.png"
    plot_plan(_profile(4.0), _profile(0.25), path, links=("5mbit,10ms", "100mbit,5ms"))
    image = cv2.imread(str(path))
    # figsize 12 x 4.5 inches at 110 dpi.
    assert image is not None and image.shape[:2] == (495, 1320)
    # Something was drawn in both halves (not a blank canvas).
    assert (image[:, :660] < 250).any() and (image[:, 660:] < 250).any()
