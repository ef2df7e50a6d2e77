"""Real photographs (scikit-image's bundled ones): bytes per frame of both paths, no labels.

Sim renders are flat-shaded and compress far better than camera images; real texture moves
an image codec's bytes much more than it moves a split tensor's (a fixed-size tensor whose
entropy depends on what the network keeps). Each photo is letterboxed to the model input like
a camera frame; the image codecs code that image, our codecs the split tensor the edge makes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _photo_loaders() -> dict[str, Callable[[], np.ndarray]]:
    from skimage import data  # bundled with the package: no download

    return {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea,
            "rocket": data.rocket, "motorcycle": lambda: data.stereo_motorcycle()[0]}


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")


def photo_bytes(model, names: list[str], image_codecs: dict, lossless: dict,
                qualities: list[int] | None, splits: list[str] | None, device: str
                ) -> dict[str, Any]:
    """{"photos": {name: source size}, "rows": [{label, family, codec, setting, bytes: {photo:
    n}, mean}]} for every image codec/quality and every split/codec of ours."""
    import torch
    from sim_frames import to_model_input

    from mtl_split_core.codec import CODECS, CodecError, encode

    loaders = _photo_loaders()
    w, h = model.config.input_size
    images = {n: to_model_input(np.ascontiguousarray(loaders[n]()[..., :3]), (w, h))
              for n in names}
    rows: list[dict[str, Any]] = []

    def add(family: str, codec: str, setting: str, label: str, sizes: dict[str, int]) -> None:
        rows.append({"family": family, "codec": codec, "setting": setting, "label": label,
                     "bytes": sizes, "mean": float(np.mean(list(sizes.values())))})

    for name, codec in {**lossless, **image_codecs}.items():
        for q in ([None] if codec.lossless else (qualities or codec.qualities)):
            # Labels as the sim stills' rows, so the report can put the two side by side.
            add("image", name, "(lossless)" if q is None else f"q{q}",
                f"{name} upload (lossless)" if q is None else f"{name} q{q}",
                {p: len(codec.encode(img, q)) for p, img in images.items()})
    x = torch.from_numpy(np.stack(list(images.values()))).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        model = model.to(device).eval()
        for split in splits or model.split_names:
            z = model.edge(x.to(device), split)
            for codec in CODECS:
                try:
                    sizes = {p: encode(zi, codec).nbytes for p, zi in zip(images, z)}
                except CodecError:
                    continue
                add("ours", codec, split, f"split {split} {codec}", sizes)
    return {"photos": {n: list(loaders[n]().shape[:2][::-1]) for n in names}, "rows": rows}
