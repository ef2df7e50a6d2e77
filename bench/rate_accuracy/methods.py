"""Every way of getting a frame's answers, each scored with ``mtl_split_core.evaluate``.

A method yields one result row: what crossed the link (bytes per frame) and the headline
metrics of ``evaluate`` on what the server received. Our methods are every split point the
model's card serves times every codec it can encode there (``codec.split_codecs``: codecs
added there, and the card's entropy-coded points, show up here without a change); image
upload codes the model-input image; video codes the 30 fps sequences as one low-latency
stream. The network itself is always the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtl_split_core.codec import CodecError, split_codecs
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.evaluate import evaluate, headline

# Task -> the headline metric its curves and BD-rates use (all three: higher is better).
CURVE_METRICS = {"detection": "mAP50", "segmentation": "mIoU", "depth": "delta1"}


def curve_metrics(tasks: list[str]) -> dict[str, str]:
    """The curve metric of each of the model's tasks that has one."""
    return {task: CURVE_METRICS[task] for task in tasks if task in CURVE_METRICS}


@dataclass(frozen=True)
class Method:
    """One operating point: ``family`` ('ours', 'image', 'video', 'reference'), ``codec``
    (the curve it belongs to), ``setting`` (split, quality or CRF)."""

    family: str
    codec: str
    setting: str
    run: Callable[[], dict[str, Any]]  # -> {"bytes_per_frame": float, **metrics}

    @property
    def label(self) -> str:
        if self.family == "ours":
            return f"split {self.setting} {self.codec}"
        return f"{self.codec} {self.setting}"


class Scorer:
    """``evaluate`` on one frame set with one model; every method goes through it."""

    def __init__(self, model, data: dict, device: str, batch_size: int):
        self.model, self.data, self.device, self.batch_size = model, data, device, batch_size

    def metrics(self, images: np.ndarray | None = None, split: str | None = None,
                codec: str | None = None, groups: np.ndarray | None = None) -> dict[str, Any]:
        data = self.data if images is None else {**self.data, "images": images}
        r = evaluate(self.model, data, split, codec, self.device, self.batch_size,
                     groups=None if groups is None else groups.tolist())
        out: dict[str, Any] = {k: v for k, v in headline(r).items() if v is not None}
        if "bytes_per_frame" in r:
            out["bytes_per_frame"] = r["bytes_per_frame"]
        return out


def our_methods(scorer: Scorer, splits: list[str] | None = None) -> Iterator[Method]:
    """Every (split, codec) operating point the model and the runtime offer (with the card's
    entropy-coded points at the split its tables code)."""
    tables = tables_of(scorer.model.config.entropy)
    for split in splits or scorer.model.split_names:
        for codec in split_codecs(tables, split):
            yield Method("ours", codec, split,
                         lambda split=split, codec=codec: scorer.metrics(split=split,
                                                                         codec=codec))


def temporal_methods(scorer: Scorer, splits: list[str], codecs: list[str],
                     groups: np.ndarray) -> Iterator[Method]:
    """Temporal codecs (mtl_split_core/temporal_codec.py): each sequence (frames sharing a
    ``groups`` id, in order) as one stream, as an edge sends it."""
    for split in splits:
        for codec in codecs:
            yield Method("ours", codec, split,
                         lambda split=split, codec=codec: scorer.metrics(
                             split=split, codec=codec, groups=groups))


def reference_methods(scorer: Scorer, input_bytes: int, lossless: dict[str, float],
                      ) -> Iterator[Method]:
    """The float network: run locally (nothing sent) or remotely on a lossless image (same
    predictions, different bytes). Evaluated once."""
    cache: dict[str, dict] = {}

    def float_metrics(nbytes: float) -> dict[str, Any]:
        if "m" not in cache:
            cache["m"] = scorer.metrics()
        return {**cache["m"], "bytes_per_frame": float(nbytes)}

    yield Method("reference", "local inference", "(robot runs the whole network)",
                 lambda: float_metrics(0))
    yield Method("reference", "raw input upload", "(uncompressed RGB)",
                 lambda: float_metrics(input_bytes))
    for name, nbytes in lossless.items():
        yield Method("reference", f"{name} upload", "(lossless)",
                     lambda nbytes=nbytes: float_metrics(nbytes))


def image_methods(scorer: Scorer, codecs: dict, qualities: list[int] | None
                  ) -> Iterator[Method]:
    """Remote inference on the model-input image coded with each image codec and quality."""
    def run(codec, quality: int) -> dict[str, Any]:
        coded = [codec.encode(img, quality) for img in scorer.data["images"]]
        decoded = np.stack([codec.decode(b) for b in coded])
        return {**scorer.metrics(images=decoded),
                "bytes_per_frame": float(np.mean([len(b) for b in coded]))}

    for name, codec in codecs.items():
        for q in qualities or codec.qualities:
            yield Method("image", name, f"q{q}", lambda codec=codec, q=q: run(codec, q))


def video_methods(scorer: Scorer, codecs: dict, crfs: list[int] | None, keyint: int,
                  groups: np.ndarray) -> Iterator[Method]:
    """Each sequence (frames sharing a ``groups`` id, in order) as one stream per CRF."""
    def run(codec, crf: int) -> dict[str, Any]:
        images = scorer.data["images"]
        decoded, sizes = np.empty_like(images), np.zeros(len(images))
        keyframes = 0
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            decoded[idx], sizes[idx], keys = codec.code(images[idx], crf, keyint)
            keyframes += len(keys)
        return {**scorer.metrics(images=decoded), "bytes_per_frame": float(sizes.mean()),
                "keyframes": keyframes}

    for name, codec in codecs.items():
        for crf in crfs or codec.crfs:
            yield Method("video", name, f"crf{crf}", lambda codec=codec, crf=crf: run(codec, crf))


def run_methods(methods: list[Method], bar) -> list[dict[str, Any]]:
    """Each method's row; a codec that cannot code this model's tensors (CodecError) is kept
    as a row that says why, not dropped silently."""
    rows = []
    for m in methods:
        bar.set_postfix_str(m.label[:40])
        row: dict[str, Any] = {"family": m.family, "codec": m.codec, "setting": m.setting,
                               "label": m.label}
        start = time.monotonic()
        try:
            row.update(m.run())
        except CodecError as err:
            row["skipped"] = str(err)
        row["elapsed_s"] = round(time.monotonic() - start, 1)
        rows.append(row)
        bar.update(1)
    return rows
