"""The one evaluation loop: per-frame predictions against ground truth, one metric per task.

``score(pairs, config)`` is the loop every evaluation uses: ``mtl-split eval`` (through
``evaluate``: model outputs on dataset frames), the demo (messages a live pipeline published)
and the link benchmark (``ServerRunner`` results). A prediction is a dict of result fields
(as ``ServerResult.as_dict()``), a truth a frame's ground truth (``boxes``, ``labels``, ``seg``,
``depth``, ...); each registered task's metric takes what it needs. Partial labels: a frame
whose truth says it lacks a task's label (``has_<task>`` False) is left out of that task's
metric only.

``evaluate``'s codec path is the deployment path: edge -> encode -> decode -> server, so the
cost of the bottleneck and of quantization is measured, not assumed. At split ``input`` (image
upload) the codec is an image codec: the frames go through it, then the whole network. A
temporal codec (``temporal_codec.py``) codes the frames in order as one stream per sequence
(``groups``: each frame's sequence id; a new id starts a new stream with a keyframe).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mtl_split_core.codec import decode, encode
from mtl_split_core.data.frames import Frames, as_frames, frame_batches, frame_truth
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.image_codec import INPUT_SPLIT, round_trip
from mtl_split_core.model.config import ModelConfig
from mtl_split_core.model.network import MultiTaskSplitNet
from mtl_split_core.tasks import PostprocessContext, get_task, get_tasks, is_labelled, task_names
from mtl_split_core.tasks.depth import frame_focals
from mtl_split_core.temporal_codec import TemporalDecoder, TemporalEncoder, is_temporal


def score(pairs: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]], config: ModelConfig,
          tasks: Sequence[str] | None = None) -> dict[str, dict]:
    """Metrics of ``tasks`` (default: the config's) over (prediction, truth) frame pairs:
    task name -> that task's metric result."""
    metrics = {task.name: task.metric(config)
               for task in get_tasks(config.tasks if tasks is None else tasks)}
    for prediction, truth in pairs:
        for name, metric in metrics.items():
            if is_labelled(truth, name):
                metric.update(prediction, truth)
    return {name: metric.compute() for name, metric in metrics.items()}


@torch.inference_mode()
def evaluate(model: MultiTaskSplitNet, data: dict | Frames, split: str | None = None,
             codec: str | None = None, device: str | torch.device = "cpu",
             batch_size: int = 16, score_threshold: float = 0.05,
             progress: bool = False, workers: int = 0,
             groups: Sequence[int] | None = None) -> dict:
    """Metrics over ``data`` (a dataset dict or ``Frames`` decoded on demand by ``workers``
    processes; frames at the model's input size). ``groups``: the sequence of each frame, for
    a temporal codec (None: one sequence)."""
    model = model.to(device).eval()
    cfg = model.config
    frames = as_frames(data)
    nbytes: list[int] = []
    pairs = _predictions(model, frames, split, codec, device, batch_size, score_threshold,
                         progress, nbytes, workers, groups)
    metrics = score(pairs, cfg)
    result = {"frames": len(frames), "split": split or cfg.default_split,
              "codec": codec or "float", **metrics}
    if nbytes:
        result["bytes_per_frame"] = float(np.mean(nbytes))
    return result


def _predictions(model: MultiTaskSplitNet, frames: Frames, split: str | None,
                 codec: str | None, device: str | torch.device, batch_size: int,
                 score_threshold: float, progress: bool, nbytes: list[int], workers: int,
                 groups: Sequence[int] | None = None) -> Iterator[tuple[dict, dict]]:
    """(prediction, truth) per frame: edge -> [codec] -> server -> each task's post-processing."""
    tasks = get_tasks(model.config.tasks)
    context = PostprocessContext(score_threshold=score_threshold, max_detections=100)
    n = len(frames)
    batches = [list(range(start, min(n, start + batch_size)))
               for start in range(0, n, batch_size)]
    upload = split == INPUT_SPLIT  # image upload: frames through the image codec, whole network
    net_split = None if upload else split
    tables = tables_of(model.config.entropy)  # the model's entropy-coded codecs (or None)
    if tables is not None and (net_split or model.config.default_split) != tables.split:
        tables = None  # they code their own split only
    stream = _Stream(codec, tables) if codec is not None and is_temporal(codec) else None
    for batch_ids, truths in zip(batches, tqdm(frame_batches(frames, batches, list, workers),
                                               total=len(batches), disable=not progress,
                                               desc="eval")):
        images = np.stack([t["images"] for t in truths])
        if upload and codec is not None:
            images, sizes = round_trip(images, codec)
            nbytes += sizes
        imgs = torch.from_numpy(images).to(device)
        x = imgs.permute(0, 3, 1, 2).float() / 255.0
        z = model.edge(x, net_split)
        if stream is not None and not upload:
            z = stream.code(z, [groups[i] if groups is not None else 0
                                for i in batch_ids], nbytes)
        elif codec is not None and not upload:
            encoded = [encode(zi, codec, tables=tables) for zi in z]
            nbytes += [e.nbytes for e in encoded]
            z = torch.stack([torch.from_numpy(decode(e, tables=tables))
                             for e in encoded]).to(device)
        # fy of each frame (frames are at the network's input size; unknown: the reference's).
        focal = frame_focals(np.stack([t["k"] for t in truths]) if "k" in truths[0] else None,
                             model.config.depth_reference_focal, device)
        out = model.server(z, net_split, out_hw=(x.shape[-2], x.shape[-1]), focal=focal)
        predictions: list[dict] = [{} for _ in range(len(x))]
        for task in tasks:
            for prediction, fields in zip(predictions, task.postprocess(out, context)):
                prediction.update(fields)
        yield from zip(predictions, truths)


class _Stream:
    """A temporal codec's encoder and decoder over frames in order, restarted per sequence."""

    def __init__(self, codec: str, tables: Any) -> None:
        self.codec, self.tables = codec, tables
        self.group: int | None = None
        self.encoder = TemporalEncoder(codec, tables)
        self.decoder = TemporalDecoder()

    def code(self, z: torch.Tensor, groups: list[int], nbytes: list[int]) -> torch.Tensor:
        out = []
        for zi, group in zip(z, groups):
            if group != self.group:
                self.group = group
                self.encoder = TemporalEncoder(self.codec, self.tables)
                self.decoder = TemporalDecoder()
            enc = self.encoder.encode(zi)
            nbytes.append(enc.nbytes)
            out.append(torch.from_numpy(self.decoder.decode(enc, tables=self.tables)))
        return torch.stack(out).to(z.device)


__all__ = ["evaluate", "frame_truth", "headline", "score"]


def headline(result: dict) -> dict:
    """The numbers people compare (mAP@0.5, mIoU, delta<1.25, ...): every registered task's
    headline numbers, None where the result has no such task."""
    out: dict[str, float | None] = {}
    for name in task_names():
        for key, metric_key in get_task(name).headline.items():
            out[key] = result.get(name, {}).get(metric_key)
    return out
