"""The server half at run time: FeaturePacket -> decode -> rest of the network -> outputs.

Outputs are produced at the *output resolution*: the network input with the letterbox padding
cropped away, i.e. the source image scaled by the letterbox scale. Detections are in source
pixels (they are small; mapping them back is exact). ``output_camera_info_scale`` tells the ROS
layer how to scale the source intrinsics to the output images.

A packet at split ``input`` (image upload, ``image_codec.py``) carries the model-input image:
the server decodes it and runs the whole network, the edge prefix and the server half of the
model's default split (what ``forward`` computes), batched apart from features.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from mtl_split_core.codec import CodecError, decode, parse_codec
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.geometry import Intrinsics
from mtl_split_core.host_copy import HostCopy
from mtl_split_core.image_codec import (
    INPUT_SPLIT,
    ImageCodecError,
    decode_image,
    parse_image_codec,
)
from mtl_split_core.model.card import accepted_edges
from mtl_split_core.model.network import MultiTaskSplitNet
from mtl_split_core.runtime.backends import (
    OnnxExport,
    OrtEdge,
    OrtOptions,
    OrtServer,
    check_backend,
    with_model_folder,
)
from mtl_split_core.runtime.cuda_graph import (
    SERVER_BUCKETS,
    CudaGraphServer,
    PostCaptureError,
)
from mtl_split_core.runtime.device import resolve_device, resolve_dtype
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.frame_views import (
    NO_VIEWS,
    ViewRequest,
    camera_rows,
    color_table,
    colorize,
    map_camera,
    point_grid,
    valid_points,
)
from mtl_split_core.runtime.model_files import load_model_param, resolve_model_path
from mtl_split_core.runtime.packet import (
    INPUT_SPLIT_INDEX,
    FeaturePacket,
    PacketRejected,
    check_packet,
    content_box,
    short_repr,
)
from mtl_split_core.runtime.torchscript import TorchScriptServer
from mtl_split_core.tasks import PostprocessContext, Task, get_tasks, task_names
from mtl_split_core.temporal_codec import TemporalDecoder, base_codec, is_temporal
from mtl_split_core.viz import class_palette

__all__ = ["DecodedPacket", "PacketRejected", "ServerResult", "ServerRunner"]


@dataclass(frozen=True)
class DecodedPacket:
    """A packet that passed every check, its split tensor decoded: all a hostile packet can
    get wrong has been found by the time one exists (``ServerRunner.admit``)."""

    packet: FeaturePacket
    codes: np.ndarray                  # the decoded split tensor (C, H, W); at split input
    #                                    the model-input image, float32 (3, H, W) in [0, 1]
    crop: tuple[int, int, int, int]    # the source's content box in the network input
    decode_ms: float
    # The source camera (its camera_info, in source pixels); None = unknown: depth assumes the
    # model's reference camera.
    camera: Intrinsics | None = None

    @property
    def focal_px(self) -> float | None:
        """The camera's vertical focal length in source pixels (None = unknown)."""
        return None if self.camera is None else self.camera.fy

    @property
    def source_size(self) -> tuple[int, int]:
        return self.packet.source_size


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
    # Where the frame came from: the source image's (W, H) and camera (None = unknown).
    source_size: tuple[int, int] = (0, 0)
    camera: Intrinsics | None = None
    # Views made with the batch (runtime/frame_views.py), when requested: class-map field ->
    # rgb8 (h, w, 3); the point cloud (M, 4) float32 x y z + colour bits, and its stride.
    colors: dict[str, np.ndarray] = field(default_factory=dict)
    cloud: np.ndarray | None = None
    cloud_stride: int = 0

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


def source_camera(k: ArrayLike | None, source_size: tuple[int, int]) -> Intrinsics | None:
    """The camera of a ``source_size`` (W, H) image from its K, or None when K is not given or
    unset (fx or fy not positive: an unknown camera)."""
    if k is None:
        return None
    values = np.asarray(k, dtype=np.float64).reshape(-1).tolist()  # Python floats: cheaper
    if len(values) == 9 and values[0] > 0 and values[4] > 0:          # to compare, per frame
        return Intrinsics.from_camera_info_k(values, *source_size)
    return None


class ServerRunner:
    def __init__(self, model: MultiTaskSplitNet, card: dict, device: str = "auto",
                 precision: str = "fp32", tasks: Sequence[str] | None = None,
                 score_threshold: float = 0.3, max_detections: int = 50,
                 backend: str = "torch", onnx: OrtOptions | None = None,
                 cuda_graphs: bool = True, torchscript: bool = False):
        """``tasks``: the heads to run (None = every task of the model). ``backend``:
        ``torch`` runs the model, ``onnxruntime`` the exported server files of ``onnx.folder``
        (every exported split is loaded now, so a bad file fails at start-up).
        ``cuda_graphs``: on a CUDA device with the torch backend ``run_batch`` replays CUDA
        graphs (runtime/cuda_graph.py). ``torchscript``: on the CPU with the torch backend
        the server half runs as frozen TorchScript traces (runtime/torchscript.py)."""
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
        self._ort_edge: OrtEdge | None = None
        if backend == "onnxruntime":
            export = OnnxExport(card, onnx or OrtOptions(), self.device,
                                fp16=precision == "fp16",
                                strict_device=(device or "auto").strip().lower() != "auto")
            self._ort = {s: OrtServer(export, s) for s in self.split_names if export.has(s)}
            if not self._ort:
                raise ConfigError("onnx_dir", f"{export.folder}: exports no split of this model")
            default = card["default_split"]
            if default in self._ort:  # split input: the default split's two halves
                self._ort_edge = OrtEdge(export, default)
            self.device, self.dtype = torch.device("cpu"), torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        self.input_size = tuple(card["input_size"])
        # Fingerprints of the edges served: this model's and those its card accepts.
        self.accepted_edges = accepted_edges(card)
        # (C, H, W) a packet of each split must declare, checked per message: computed once.
        w, h = self.input_size
        self._split_shapes: dict[str, tuple[int, ...]] = {
            INPUT_SPLIT: (3, h, w),
            **{s: tuple(model.split_shape(s, self.input_size)) for s in self.split_names}}
        self._graphs: CudaGraphServer | None = None
        self._constants: dict[tuple[str, str], torch.Tensor] = {}  # palettes per device
        # A temporal codec's reference for callers that keep no stream of their own (one
        # stream: the edge's local runner, tools); a node passes each robot's to ``admit``.
        self.references = TemporalDecoder()
        if cuda_graphs and self.device.type == "cuda" and not self._ort:
            self._graphs = CudaGraphServer(self.model, self.input_size, self.dtype,
                                           input_split=card["default_split"])
        self._script: TorchScriptServer | None = None
        if torchscript and self.device.type == "cpu" and self.dtype == torch.float32 \
                and not self._ort:
            self._script = TorchScriptServer(self.model, self.input_size)

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
        # A frozen-edge fine-tune also serves the edges deployed with the models it came from.
        if packet.model_fingerprint not in self.accepted_edges:
            raise PacketRejected(
                "fingerprint", f"model fingerprint {packet.model_fingerprint!r} "
                f"({packet.model_id or '?'}) != served {self.card['fingerprint']!r} "
                f"({self.card.get('name')}); run edge and server with the same model")
        if not (0 <= packet.split_index < len(self.split_names)
                or packet.split_index == INPUT_SPLIT_INDEX):
            raise PacketRejected("split", f"split index {packet.split_index} not in "
                                 f"0..{len(self.split_names) - 1} nor {INPUT_SPLIT_INDEX} "
                                 f"({INPUT_SPLIT})")
        split = self.split_name(packet.split_index)
        if self._ort and split not in self._ort and not (split == INPUT_SPLIT
                                                          and self._ort_edge is not None):
            raise PacketRejected("split", f"split {split} is not in this server's ONNX export "
                                 f"(has {', '.join(self._ort)}; {INPUT_SPLIT} needs the "
                                 f"default split {self.card['default_split']})")
        expected = self._split_shapes[split]
        # Check the declared shape before decoding: a hostile packet cannot make us allocate
        # more than the model's own split tensor.
        if tuple(packet.tensor.shape) != expected:
            shape = short_repr(tuple(packet.tensor.shape))
            raise PacketRejected("shape", f"tensor shape {shape} does not match split {split} "
                                 f"of the model: expected {expected}")
        return content_box(packet, self.input_size)

    def admit(self, packet: FeaturePacket, camera_k: ArrayLike | None = None,
              references: TemporalDecoder | None = None) -> DecodedPacket:
        """``check`` the packet and decode its tensor: raise PacketRejected for anything this
        server cannot run (including a garbage payload or an unknown codec), so only packets
        that will produce outputs are queued. ``camera_k``: the source camera's row-major K
        (camera_info.k, checked against the input bounds; None or all zero = unknown), kept
        with the packet (``DecodedPacket.camera``) for depth and the 3D outputs.
        ``references``: the packet's stream's temporal decoder (temporal codecs; None: this
        runner's own); a delta it cannot decode is rejected with its reason
        (``temporal_codec.NEEDS_KEYFRAME``: the edge should send a keyframe)."""
        crop = self.check(packet)
        camera = source_camera(camera_k, packet.source_size)
        if packet.split_index == INPUT_SPLIT_INDEX:
            return self._admit_image(packet, crop, camera)
        temporal = is_temporal(packet.tensor.codec)
        try:
            parse_codec(base_codec(packet.tensor.codec))
        except CodecError as err:
            raise PacketRejected("codec", str(err)) from err
        t0 = time.perf_counter()
        tables = self._tables if self._tables and self._tables.split == \
            self.split_names[packet.split_index] else None
        limit = math.prod(packet.tensor.shape)
        try:  # check() pinned the shape to the model's: decode allocates no more than that
            if temporal:
                stream = self.references if references is None else references
                codes = stream.decode(packet.tensor, limit, tables)
            else:
                codes = decode(packet.tensor, max_elements=limit, tables=tables)
        except CodecError as err:  # payload, entropy (an entropy-coded payload), temporal ones
            raise PacketRejected(err.reason, str(err)) from err
        return DecodedPacket(packet, codes, crop, (time.perf_counter() - t0) * 1e3, camera)

    def _admit_image(self, packet: FeaturePacket, crop: tuple[int, int, int, int],
                     camera: Intrinsics | None) -> DecodedPacket:
        """Split ``input``: the image codec's checks (id, bytes, magic, header size) before
        its decoding, then the image as the network takes it."""
        tensor = packet.tensor
        try:
            parse_image_codec(tensor.codec)
        except ImageCodecError as err:
            raise PacketRejected("codec", str(err)) from err
        if len(tensor.scale) or len(tensor.offset):
            raise PacketRejected("payload", f"{tensor.codec} carries no scale/offset, got "
                                 f"{len(tensor.scale)} and {len(tensor.offset)} values")
        t0 = time.perf_counter()
        try:
            image = decode_image(tensor.data, tensor.codec, self.input_size)
        except ImageCodecError as err:
            raise PacketRejected(err.reason, str(err)) from err
        codes = np.ascontiguousarray(image.transpose(2, 0, 1), np.float32) / np.float32(255)
        return DecodedPacket(packet, codes, crop, (time.perf_counter() - t0) * 1e3, camera)

    def split_name(self, index: int) -> str:
        """The split a (checked) packet's ``split_index`` names."""
        return INPUT_SPLIT if index == INPUT_SPLIT_INDEX else self.split_names[index]

    def _ort_network(self, split: str, codes: np.ndarray,
                     focal: np.ndarray | float | None) -> dict:
        """``_network`` on the onnxruntime backend."""
        if split == INPUT_SPLIT and self._ort_edge is not None:
            split = self.card["default_split"]
            codes = self._ort_edge(codes)
        return self._ort[split](codes, focal)

    def __call__(self, packet: FeaturePacket | DecodedPacket, focal_px: float | None = None,
                 views: ViewRequest = NO_VIEWS) -> ServerResult:
        """Run the server part on ``packet`` (``admit``ted here unless it already was): a
        batch of one (``run_batch``). ``focal_px``: the camera's vertical focal length in
        source pixels (camera_info K[4]); models with a depth reference focal scale depth by it
        (None = the admitted packet's camera, else the camera the model was calibrated to)."""
        decoded = packet if isinstance(packet, DecodedPacket) else self.admit(packet)
        if focal_px is None:
            focal_px = decoded.focal_px
        return self.run_batch([decoded], [focal_px], [views])[0]

    def close(self) -> None:
        """Wait for work left in the background (TorchScript traces) before the process ends."""
        if self._script is not None:
            self._script.close()

    # ---------------------------------------------------------------------- batched path
    def capture_graphs(self, splits: Sequence[str]) -> None:
        """On the CUDA-graph path, capture every batch size of ``splits`` now rather than on
        the first batches (a capture takes milliseconds to a second); on the TorchScript path
        start tracing them in the background (a second or two each; eager until ready).
        No-op otherwise."""
        if self._graphs is not None:  # split input: graphs of the whole network
            self._graphs.capture(list(dict.fromkeys(splits)))
        if self._script is not None:  # split input: the default split's server half
            self._script.prepare_in_background(list(dict.fromkeys(
                self.card["default_split"] if s == INPUT_SPLIT else s for s in splits)))

    @torch.inference_mode()
    def run_batch(self, items: Sequence[DecodedPacket],
                  focals: Sequence[float | None] | None = None,
                  views: Sequence[ViewRequest] | None = None) -> list[ServerResult]:
        """Results of ``self(item, focal_px=focal, views=view)`` for every item, in order
        (``focals`` None: each item's own camera; ``views`` None: none).

        One network call per group of items that share a split (and whether a focal length is
        given: a depth head treats "none" differently from any number). Post-processing runs
        batched on the model's device, per group of items that share a crop, transform and
        source size, with the views (runtime/frame_views.py) for the rows that want them; then
        everything crosses to the host in one copy (mtl_split_core/host_copy.py) and each
        frame takes its row. Timings per item: its own ``decode``, its group's ``network``,
        the batch's ``postprocess`` (device work, the copy and the rows) and ``batch`` (the
        group's size)."""
        if focals is None:
            focals = [item.focal_px for item in items]
        views = [NO_VIEWS] * len(items) if views is None else list(views)
        if not len(items) == len(focals) == len(views):
            raise ValueError(f"{len(items)} items but {len(focals)} focal lengths and "
                             f"{len(views)} view requests")
        if not items:
            return []
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, (item, focal) in enumerate(zip(items, focals)):
            groups.setdefault((item.packet.split_index, focal is None), []).append(i)
        clock = _Clock(self.device)
        batch = _Batch(self, items, views, HostCopy(self.device))
        chunk = SERVER_BUCKETS[-1] if self._graphs is not None else max(1, len(items))
        network: list[tuple[list[int], Any, Any]] = []
        for (index, no_focal), members in groups.items():
            for start in range(0, len(members), chunk):
                part = members[start:start + chunk]
                # One context (the usual case: robots with one camera model): the tasks'
                # device post-processing runs with the network (in its CUDA graph there).
                contexts = {self.context(items[i]) for i in part}
                one = contexts.pop() if len(contexts) == 1 else None
                began = clock.mark()
                out = self._network(index, [items[i] for i in part],
                                    None if no_focal else [focals[i] for i in part], one)
                ended = clock.mark()
                network.append((part, began, ended))
                if one is None:
                    batch.postprocess_device(out, part)
                else:
                    outputs, per_task = out
                    batch.stage(outputs, per_task, one, part)
        results = batch.finish()
        done = clock.mark()
        network_ms = [clock.ms(began, ended) for _, began, ended in network]
        post_ms = max(0.0, clock.ms(network[0][1], done) - sum(network_ms))
        for (part, _, _), net_ms in zip(network, network_ms):
            for i in part:
                results[i].timings_ms = {
                    "decode": items[i].decode_ms, "network": net_ms,
                    "postprocess": post_ms,
                    "total": items[i].decode_ms + net_ms + post_ms,
                    "batch": float(len(part))}
        return results

    def _network(self, split_index: int, items: list[DecodedPacket],
                 focals: list[float | None] | None, context: PostprocessContext | None = None
                 ) -> Any:
        """The network outputs of ``items`` (one split; ``focals`` None: none given); at
        split input the whole network (edge prefix and the default split's server half).
        With ``context`` (the items' one context) ``device_fields``' pair instead, on the
        CUDA-graph path captured in the network's graph (``CudaGraphServer.fuses``)."""
        split = self.split_name(split_index)
        codes = np.stack([item.codes for item in items])
        focal_px = None if focals is None else np.array(
            [float(f) * item.packet.transform[1] for f, item in zip(focals, items)
             if f is not None], np.float32)
        post = None if context is None else partial(self.device_fields, context)
        if self._ort:
            out = self._ort_network(split, codes, focal_px)
            return out if post is None else post(out)
        z = torch.from_numpy(codes).to(self.device, self.dtype)
        focal = None if focal_px is None else torch.from_numpy(focal_px).to(self.device)
        if split == INPUT_SPLIT and self._graphs is None:  # the graphs hold the prefix too
            split = self.card["default_split"]
            z = self.model.edge(z, split)
        if self._graphs is not None:
            if post is not None and self._graphs.fuses(context):
                with contextlib.suppress(PostCaptureError):  # then eagerly, as below
                    return self._graphs(z, split, focal, post, context)
            out = self._graphs(z, split, focal)
        elif self._script is not None:
            out = self._script(z, split, focal)
        else:
            out = self.model.server(z, split, focal=focal)
        return out if post is None else post(out)

    def device_fields(self, context: PostprocessContext, out: dict[str, torch.Tensor]
                      ) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor] | None]]:
        """(``out``, each task's ``postprocess_device`` of it for ``context``; None for a
        host-only task): what a batch stages for its one host copy."""
        return out, [task.postprocess_device(out, context) for task in self._tasks]

    def context(self, decoded: DecodedPacket) -> PostprocessContext:
        """Where ``decoded``'s outputs sit in its source image, with this server's settings."""
        packet = decoded.packet
        return PostprocessContext(crop=decoded.crop, transform=packet.transform,
                                  source_size=packet.source_size,
                                  score_threshold=self.score_threshold,
                                  max_detections=self.max_detections)


    def result(self, fields: dict[str, Any], decoded: DecodedPacket,
               colors: dict[str, np.ndarray] | None = None, cloud: np.ndarray | None = None,
               cloud_stride: int = 0) -> ServerResult:
        """One frame's ``ServerResult`` from its tasks' result fields (and views)."""
        fields = dict(fields)
        builtin = {name: fields.pop(name) if name in fields else empty()
                   for name, empty in _BUILTIN_FIELDS.items()}
        sx, sy = decoded.packet.transform[:2]
        return ServerResult(**builtin, output_scale=(float(sx), float(sy)),
                            extra_fields=fields, source_size=decoded.source_size,
                            camera=decoded.camera, colors=colors or {}, cloud=cloud,
                            cloud_stride=cloud_stride)

    def map_camera(self, decoded: DecodedPacket, map_hw: tuple[int, int]) -> Intrinsics:
        """The camera of ``decoded``'s output maps (``frame_views.map_camera``; without a
        camera_info the model's reference camera, as the outputs assume)."""
        return map_camera(decoded.camera, decoded.source_size, map_hw,
                          self.card.get("depth_reference_focal"),
                          float(decoded.packet.transform[1]))

    def palette(self, device: torch.device) -> torch.Tensor:
        """The segmentation classes' colours (viz.class_palette), on ``device``."""
        return self._on(device, "palette", lambda: class_palette(
            len(self.card["segmentation_classes"])))

    def color_table(self, device: torch.device) -> torch.Tensor:
        """Every uint8 class id's colour (frame_views.color_table), on ``device``."""
        return self._on(device, "table", lambda: color_table(class_palette(
            len(self.card["segmentation_classes"]))))

    def _on(self, device: torch.device, name: str, make: Callable[[], np.ndarray]
            ) -> torch.Tensor:
        key = (name, str(device))
        if key not in self._constants:
            self._constants[key] = torch.from_numpy(make()).to(device)
        return self._constants[key]


class _Clock:
    """Marks on the model's device: CUDA events there (the GPU's own time, read after the
    batch's one wait), else the host clock."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))  # the model's GPU, not GPU 0
        return event

    def ms(self, start: Any, end: Any) -> float:
        """Milliseconds between two marks (CUDA: both passed, i.e. after the host copy)."""
        if self.cuda:
            end.synchronize()
            return float(start.elapsed_time(end))
        return (end - start) * 1e3


class _Batch:
    """One ``run_batch``'s post-processing: the device part per group of frames sharing a
    context, staged for the one host copy, then each frame's result from its rows."""

    def __init__(self, runner: ServerRunner, items: Sequence[DecodedPacket],
                 views: Sequence[ViewRequest], copy: HostCopy) -> None:
        self.runner, self.items, self.views, self.copy = runner, items, views, copy
        # Per staged group: the item indices, field -> index into the copy's list (per-frame
        # rows), the host tasks' per-frame fields, and the views' row indices.
        self.staged: list[_Staged] = []

    def postprocess_device(self, out: dict[str, torch.Tensor], part: list[int]) -> None:
        """Stage the post-processing of the items ``part`` (rows of ``out``, in order), per
        group of items that share a context."""
        by_context: dict[PostprocessContext, list[int]] = {}
        for row, i in enumerate(part):
            by_context.setdefault(self.runner.context(self.items[i]), []).append(row)
        for context, rows in by_context.items():
            out_rows = {k: _rows(v, rows) for k, v in out.items()}
            self.stage(*self.runner.device_fields(context, out_rows), context,
                       [part[r] for r in rows])

    def stage(self, out: dict[str, torch.Tensor], per_task: list[dict[str, torch.Tensor] | None],
              context: PostprocessContext, members: list[int]) -> None:
        """Stage the items ``members`` (rows of ``out``, in order) of one ``context``, given
        each task's device post-processing (``ServerRunner.device_fields``)."""
        staged = _Staged(members)
        fields: dict[str, torch.Tensor] = {}
        for task, batched in zip(self.runner._tasks, per_task):
            if batched is None:  # a host-only task: its rows now (its own copies)
                staged.host_rows.append(task.postprocess(out, context))
            else:
                fields.update(batched)
                staged.device_tasks.append((task, tuple(batched)))
        tensors = dict(fields)
        tensors.update(self._views(fields, members, staged))
        names = list(tensors)
        staged.index = dict(zip(names, self.copy.add([tensors[n] for n in names])))
        self.staged.append(staged)

    def _views(self, fields: dict[str, torch.Tensor], members: list[int], staged: _Staged
               ) -> dict[str, torch.Tensor]:
        """The views the members want, each made for the rows that want it."""
        out: dict[str, torch.Tensor] = {}
        wanted = [self.views[i] for i in members]
        for name in sorted({f for v in wanted for f in v.colorize} & set(fields)):
            rows = [r for r, v in enumerate(wanted) if name in v.colorize]
            staged.view_rows["color/" + name] = rows
            out["color/" + name] = colorize(_rows(fields[name], rows),
                                            self.runner.color_table(fields[name].device))
        depth = fields.get("depth")
        for stride in sorted({v.cloud_stride for v in wanted if v.cloud_stride > 0}):
            if depth is None:
                break
            rows = [r for r, v in enumerate(wanted) if v.cloud_stride == stride]
            hw = (int(depth.shape[1]), int(depth.shape[2]))
            cameras = camera_rows([self.runner.map_camera(self.items[members[r]], hw)
                                   for r in rows])
            seg = fields.get("segmentation")
            key = f"cloud/{stride}"
            staged.view_rows[key] = rows
            out[key] = point_grid(_rows(depth, rows), None if seg is None else _rows(seg, rows),
                                  torch.from_numpy(cameras).to(depth.device),
                                  self.runner.palette(depth.device), stride)
        return out

    def finish(self) -> list[ServerResult]:
        """After the device work: the one host copy, then every frame's result."""
        arrays = self.copy.fetch()
        results: list[ServerResult | None] = [None] * len(self.items)
        for staged in self.staged:
            # view -> {row of the group: row of the view's tensor}
            view_of = {key: {r: j for j, r in enumerate(rows)}
                       for key, rows in staged.view_rows.items()}
            for row, i in enumerate(staged.members):
                fields: dict[str, Any] = {}
                for task, names in staged.device_tasks:
                    fields.update(task.finish({n: arrays[staged.index[n]][row] for n in names}))
                for host in staged.host_rows:
                    fields.update(host[row])
                colors, cloud, stride = {}, None, 0
                for key, where in view_of.items():
                    if row not in where:
                        continue
                    value = arrays[staged.index[key]][where[row]]
                    kind, name = key.split("/", 1)
                    if kind == "color":
                        colors[name] = value
                    else:
                        cloud, stride = valid_points(value), int(name)
                results[i] = self.runner.result(fields, self.items[i], colors, cloud, stride)
        return [r for r in results if r is not None]


@dataclass
class _Staged:
    members: list[int]
    index: dict[str, int] = field(default_factory=dict)
    device_tasks: list[tuple[Task, tuple[str, ...]]] = field(default_factory=list)
    host_rows: list[list[dict[str, Any]]] = field(default_factory=list)
    view_rows: dict[str, list[int]] = field(default_factory=dict)


def _rows(t: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """``t``'s rows ``rows`` (all of them: ``t`` itself)."""
    if rows == list(range(len(t))):
        return t
    return t[torch.tensor(rows, device=t.device)]
