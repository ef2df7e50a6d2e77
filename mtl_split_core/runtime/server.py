"""The server half at run time: FeaturePacket -> decode -> rest of the network -> outputs.

Outputs are produced at the *output resolution*: the network input with the letterbox padding
cropped away, i.e. the source image scaled by the letterbox scale. Detections are in source
pixels (they are small; mapping them back is exact). ``output_camera_info_scale`` tells the ROS
layer how to scale the source intrinsics to the output images.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtl_split_core.codec import CodecError, decode, parse_codec
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.model.network import MultiTaskSplitNet
from mtl_split_core.runtime.backends import (
    OnnxExport,
    OrtOptions,
    OrtServer,
    check_backend,
    with_model_folder,
)
from mtl_split_core.runtime.cuda_graph import SERVER_BUCKETS, CudaGraphServer
from mtl_split_core.runtime.device import resolve_device, resolve_dtype
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.model_files import load_model_param, resolve_model_path
from mtl_split_core.runtime.packet import (
    FeaturePacket,
    PacketRejected,
    check_packet,
    content_box,
    short_repr,
)
from mtl_split_core.tasks import PostprocessContext, get_tasks, task_names

__all__ = ["DecodedPacket", "PacketRejected", "ServerResult", "ServerRunner"]


@dataclass(frozen=True)
class DecodedPacket:
    """A packet that passed every check, its split tensor decoded: all a hostile packet can
    get wrong has been found by the time one exists (``ServerRunner.admit``)."""

    packet: FeaturePacket
    codes: np.ndarray                  # the decoded split tensor (C, H, W)
    crop: tuple[int, int, int, int]    # the source's content box in the network input
    decode_ms: float


@dataclass
class ServerResult:
    boxes: np.ndarray          # (K, 4) x1, y1, x2, y2 in source pixels
    class_ids: np.ndarray      # (K,) int
    scores: np.ndarray         # (K,) float
    segmentation: np.ndarray | None   # (h, w) uint8 class ids at output resolution
    depth: np.ndarray | None          # (h, w) float32 metres at output resolution
    output_scale: tuple[float, float]  # output_px = source_px * scale
    timings_ms: dict = field(default_factory=dict)
    # Result fields of tasks beyond the built-in three (Task.result_fields -> value).
    extra_fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Every task result field by name (the form ``evaluate.score`` takes)."""
        return {"boxes": self.boxes, "class_ids": self.class_ids, "scores": self.scores,
                "segmentation": self.segmentation, "depth": self.depth, **self.extra_fields}


# Fields every ServerResult has, with their value when the task is not run.
_BUILTIN_FIELDS: dict[str, Callable[[], Any]] = {
    "boxes": lambda: np.zeros((0, 4), np.float32),
    "class_ids": lambda: np.zeros((0,), np.int64),
    "scores": lambda: np.zeros((0,), np.float32),
    "segmentation": lambda: None,
    "depth": lambda: None,
}


class ServerRunner:
    def __init__(self, model: MultiTaskSplitNet, card: dict, device: str = "auto",
                 precision: str = "fp32", tasks: Sequence[str] | None = None,
                 score_threshold: float = 0.3, max_detections: int = 50,
                 backend: str = "torch", onnx: OrtOptions | None = None,
                 cuda_graphs: bool = True):
        """``tasks``: the heads to run (None = every task of the model). ``backend``:
        ``torch`` runs the model, ``onnxruntime`` the exported server files of ``onnx.folder``
        (every exported split is loaded now, so a bad file fails at start-up).
        ``cuda_graphs``: on a CUDA device with the torch backend ``run_batch`` replays CUDA
        graphs (runtime/cuda_graph.py)."""
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(precision, self.device)
        self.backend = check_backend(backend)
        tasks = tuple(card["tasks"] if tasks is None else tasks)
        unknown = set(tasks) - set(task_names())
        if unknown or not tasks:
            raise ConfigError("tasks", f"{sorted(unknown) or 'empty'}: expected a non-empty "
                              f"subset of {', '.join(task_names())}")
        missing = set(tasks) - set(card["tasks"])
        if missing:
            raise ConfigError("tasks", f"the model has no {', '.join(sorted(missing))} head "
                              f"(it has {', '.join(card['tasks'])})")
        if not 0.0 <= score_threshold <= 1.0:
            raise ConfigError("score_threshold", f"{score_threshold} must be in [0, 1]")
        if max_detections < 1:
            raise ConfigError("max_detections", f"{max_detections} must be >= 1")
        self.tasks = tuple(tasks)
        self._tasks = get_tasks(self.tasks)
        self.card = card
        self.split_names = list(model.split_names)
        self._tables = tables_of(model.config.entropy)  # entropy-coded codecs (or None)
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        self._ort: dict[str, OrtServer] = {}
        if backend == "onnxruntime":
            export = OnnxExport(card, onnx or OrtOptions(), self.device,
                                fp16=precision == "fp16",
                                strict_device=(device or "auto").strip().lower() != "auto")
            self._ort = {s: OrtServer(export, s) for s in self.split_names if export.has(s)}
            if not self._ort:
                raise ConfigError("onnx_dir", f"{export.folder}: exports no split of this model")
            self.device, self.dtype = torch.device("cpu"), torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        self.input_size = tuple(card["input_size"])
        self._graphs: CudaGraphServer | None = None
        if cuda_graphs and self.device.type == "cuda" and not self._ort:
            self._graphs = CudaGraphServer(self.model, self.input_size, self.dtype)

    @classmethod
    def from_path(cls, model: str | None, **kwargs: Any) -> ServerRunner:
        """Load the model a setting names; the onnxruntime backend's files default to the
        model folder's ``onnx/``."""
        net, card = load_model_param(model)
        if kwargs.get("backend") == "onnxruntime":
            kwargs["onnx"] = with_model_folder(kwargs.get("onnx"), resolve_model_path(model))
        return cls(net, card, **kwargs)

    def check(self, packet: FeaturePacket) -> tuple[int, int, int, int]:
        """Raise PacketRejected unless ``packet`` is within the input bounds (runtime/packet.py)
        and this server's model produced it; return its content box in the network input."""
        check_packet(packet)
        # A frozen-edge fine-tune also serves the edges deployed with the model it came from.
        if packet.model_fingerprint not in (self.card["fingerprint"],
                                            self.card.get("accepts_edge_fingerprint")):
            raise PacketRejected(
                "fingerprint", f"model fingerprint {packet.model_fingerprint!r} "
                f"({packet.model_id or '?'}) != served {self.card['fingerprint']!r} "
                f"({self.card.get('name')}); run edge and server with the same model")
        if not 0 <= packet.split_index < len(self.split_names):
            raise PacketRejected("split", f"split index {packet.split_index} not in "
                                 f"0..{len(self.split_names) - 1}")
        split = self.split_names[packet.split_index]
        if self._ort and split not in self._ort:
            raise PacketRejected("split", f"split {split} is not in this server's ONNX export "
                                 f"(has {', '.join(self._ort)})")
        expected = tuple(self.model.split_shape(split, self.input_size))
        # Check the declared shape before decoding: a hostile packet cannot make us allocate
        # more than the model's own split tensor.
        if tuple(packet.tensor.shape) != expected:
            shape = short_repr(tuple(packet.tensor.shape))
            raise PacketRejected("shape", f"tensor shape {shape} does not match split {split} "
                                 f"of the model: expected {expected}")
        return content_box(packet, self.input_size)

    def admit(self, packet: FeaturePacket) -> DecodedPacket:
        """``check`` the packet and decode its tensor: raise PacketRejected for anything this
        server cannot run (including a garbage payload or an unknown codec), so only packets
        that will produce outputs are queued."""
        crop = self.check(packet)
        try:
            parse_codec(packet.tensor.codec)
        except CodecError as err:
            raise PacketRejected("codec", str(err)) from err
        t0 = time.perf_counter()
        tables = self._tables if self._tables and self._tables.split == \
            self.split_names[packet.split_index] else None
        try:  # check() pinned the shape to the model's: decode allocates no more than that
            codes = decode(packet.tensor, max_elements=int(np.prod(packet.tensor.shape)),
                           tables=tables)
        except CodecError as err:  # reason: payload, or entropy (an entropy-coded payload)
            raise PacketRejected(err.reason, str(err)) from err
        return DecodedPacket(packet, codes, crop, (time.perf_counter() - t0) * 1e3)

    @torch.inference_mode()
    def __call__(self, packet: FeaturePacket | DecodedPacket, focal_px: float | None = None
                 ) -> ServerResult:
        """Run the server part on ``packet`` (``admit``ted here unless it already was).
        ``focal_px``: the camera's vertical focal length in source pixels (camera_info K[4]);
        models with a depth reference focal scale depth by it (None = the camera the model was
        calibrated to)."""
        decoded = packet if isinstance(packet, DecodedPacket) else self.admit(packet)
        packet, crop = decoded.packet, decoded.crop
        split = self.split_names[packet.split_index]
        t1 = time.perf_counter()
        codes = decoded.codes
        focal = None if focal_px is None else float(focal_px) * packet.transform[1]
        if self._ort:
            out = self._ort[split](codes[None], focal)
        else:
            z = torch.from_numpy(codes).to(self.device, self.dtype).unsqueeze(0)
            out = self.model.server(z, split, focal=focal)
        t2 = time.perf_counter()
        result = self._postprocess(out, packet, crop)
        t3 = time.perf_counter()
        result.timings_ms = {"decode": decoded.decode_ms, "network": (t2 - t1) * 1e3,
                             "postprocess": (t3 - t2) * 1e3,
                             "total": decoded.decode_ms + (t3 - t1) * 1e3}
        return result

    # ---------------------------------------------------------------------- batched path
    def capture_graphs(self, splits: Sequence[str]) -> None:
        """On the CUDA-graph path, capture every batch size of ``splits`` now rather than on
        the first batches (a capture takes milliseconds to a second). No-op otherwise."""
        if self._graphs is not None:
            self._graphs.capture(list(splits))

    @torch.inference_mode()
    def run_batch(self, items: Sequence[DecodedPacket], focals: Sequence[float | None]
                  ) -> list[ServerResult]:
        """Results of ``self(item, focal_px=focal)`` for every item, in order, with one network
        call per group of items that share a split (and whether a focal length is given: a
        depth head treats "none" differently from any number). Each item is post-processed with
        its own crop, transform and source size. Timings per item: its own ``decode`` and
        ``postprocess``, its group's ``network`` and ``batch`` (the group's size)."""
        if len(items) != len(focals):
            raise ValueError(f"{len(items)} items but {len(focals)} focal lengths")
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, (item, focal) in enumerate(zip(items, focals)):
            groups.setdefault((item.packet.split_index, focal is None), []).append(i)
        results: list[ServerResult | None] = [None] * len(items)
        chunk = SERVER_BUCKETS[-1] if self._graphs is not None else max(1, len(items))
        for (index, no_focal), members in groups.items():
            for start in range(0, len(members), chunk):
                part = members[start:start + chunk]
                self._run_group(index, no_focal, [items[i] for i in part],
                                [focals[i] for i in part], part, results)
        return [r for r in results if r is not None]

    def _run_group(self, split_index: int, no_focal: bool, items: list[DecodedPacket],
                   focals: list[float | None], positions: list[int],
                   results: list[ServerResult | None]) -> None:
        split = self.split_names[split_index]
        t1 = time.perf_counter()
        codes = np.stack([item.codes for item in items])
        focal_px = None if no_focal else np.array(
            [float(f) * item.packet.transform[1] for f, item in zip(focals, items)
             if f is not None], np.float32)
        if self._ort:
            out = self._ort[split](codes, focal_px)
        else:
            z = torch.from_numpy(codes).to(self.device, self.dtype)
            focal = None if focal_px is None else torch.from_numpy(focal_px).to(self.device)
            if self._graphs is not None:
                out = self._graphs(z, split, focal)
            else:
                out = self.model.server(z, split, focal=focal)
        if self.device.type == "cuda":  # the network's time, not the first copy's wait
            torch.cuda.synchronize(self.device)
        network_ms = (time.perf_counter() - t1) * 1e3
        for row, (item, position) in enumerate(zip(items, positions)):
            t2 = time.perf_counter()
            result = self._postprocess({k: v[row:row + 1] for k, v in out.items()}, item.packet,
                                       item.crop)
            post_ms = (time.perf_counter() - t2) * 1e3
            result.timings_ms = {"decode": item.decode_ms, "network": network_ms,
                                 "postprocess": post_ms,
                                 "total": item.decode_ms + network_ms + post_ms,
                                 "batch": float(len(items))}
            results[position] = result

    def _postprocess(self, out: dict, packet: FeaturePacket,
                     crop: tuple[int, int, int, int] | None = None) -> ServerResult:
        """``crop``: the letterboxed content inside the network input (``check`` returns it;
        None = compute it here)."""
        if crop is None:
            crop = content_box(packet, self.input_size)
        sx, sy = packet.transform[:2]
        context = PostprocessContext(crop=crop, transform=packet.transform,
                                     source_size=packet.source_size,
                                     score_threshold=self.score_threshold,
                                     max_detections=self.max_detections)
        fields: dict[str, Any] = {}
        for task in self._tasks:
            fields.update(task.postprocess(out, context)[0])
        builtin = {name: fields.pop(name) if name in fields else empty()
                   for name, empty in _BUILTIN_FIELDS.items()}
        return ServerResult(**builtin, output_scale=(float(sx), float(sy)),
                            extra_fields=fields)

