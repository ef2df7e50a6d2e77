"""The edge half at run time: image -> letterbox -> backbone prefix (+bottleneck) -> codec;
or, at split ``input`` (image upload), image -> letterbox -> image codec, no network."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mtl_split_core.codec import (
    CODECS,
    ENTROPY_CODECS,
    ZSTD_LEVELS,
    CodecError,
    EncodedTensor,
    encode,
    entropy_point,
    model_codecs,
    split_default,
)
from mtl_split_core.entropy_tables import EntropyTables, tables_of
from mtl_split_core.image_codec import (
    DEFAULT_IMAGE_CODEC,
    INPUT_SPLIT,
    encode_image,
    is_image_codec,
    to_uint8,
)
from mtl_split_core.preprocess import letterbox_params, letterbox_tensor
from mtl_split_core.runtime.backends import (
    OnnxExport,
    OrtEdge,
    OrtOptions,
    check_backend,
    with_model_folder,
)
from mtl_split_core.runtime.device import resolve_device, resolve_dtype
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.model_files import load_model_param, resolve_model_path
from mtl_split_core.runtime.packet import INPUT_SPLIT_INDEX, FeaturePacket
from mtl_split_core.temporal_codec import (
    TemporalEncoder,
    base_codec,
    is_temporal,
    parse_temporal,
)

# A camera image read from the received bytes (mtl_split_ros/image_cdr.read_image) is a
# read-only view: torch takes it as it is and warns that writing to it would be undefined. The
# edge never writes to it (the letterbox makes new tensors; on a GPU it is copied there), and a
# copy only to silence the warning cost 0.55 ms per 640x480 frame on the 2-core CPU (the fresh
# pages), more than reading the bytes saved (docs/BENCHMARKS.md, "One robot latency, CPU").
warnings.filterwarnings("ignore", message="The given NumPy array is not writable",
                        category=UserWarning, module=__name__.replace(".", r"\."))

# CUDA graphs an edge keeps, one per (split, zstd codec, camera size H x W) used: a few
# cameras times the splits and codecs the controller moves between. Past this many, new
# combinations run eagerly rather than holding a graph's memory each.
MAX_GRAPHS = 8
GraphKey = tuple[str, str | None, tuple[int, int]]

if TYPE_CHECKING:  # CudaGraphEdge is imported where used: only a CUDA device needs it
    from mtl_split_core.model.network import MultiTaskSplitNet
    from mtl_split_core.runtime.cuda_graph import CudaGraphEdge


class EdgeRunner:
    """Turns RGB frames into FeaturePackets. One instance per model, split and codec.

    ``backend``: ``torch`` runs the model; ``onnxruntime`` runs the exported edge files of
    ``onnx.folder`` (runtime/backends.py; the letterbox and the codec stay the same).
    """

    def __init__(self, model: MultiTaskSplitNet, card: dict, split: str | int | None = None,
                 device: str = "auto", precision: str = "fp32", codec: str | None = None,
                 zstd_level: int = 3, cuda_graphs: bool = True, backend: str = "torch",
                 onnx: OrtOptions | None = None) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(precision, self.device)
        self.card = card
        self.split_names = list(model.split_names)
        self._tables = tables_of(model.config.entropy)  # entropy-coded codecs (or None)
        self.backend = check_backend(backend)
        self._onnx: OnnxExport | None = None
        self._ort: OrtEdge | None = None
        if backend == "onnxruntime":
            # The network runs in onnxruntime; torch only letterboxes (on the CPU).
            self._onnx = OnnxExport(card, onnx or OrtOptions(), self.device,
                                    fp16=precision == "fp16",
                                    strict_device=(device or "auto").strip().lower() != "auto")
            self.device, self.dtype = torch.device("cpu"), torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        self.input_size = tuple(card["input_size"])  # (W, H)
        self._use_graph = cuda_graphs and self.device.type == "cuda" and self._onnx is None
        if self._use_graph:
            # Module.to accepts memory_format (documented); torch's overloads omit it.
            fmt = torch.channels_last
            self.model = self.model.to(memory_format=fmt)  # type: ignore[call-overload]
        # configure() may run on another thread than __call__ (a node's parameter change while
        # its worker encodes): the lock makes each frame use one consistent configuration.
        self._lock = threading.Lock()
        # Captured on first use and kept, so a split or codec change back costs nothing.
        self._graphs: dict[GraphKey, CudaGraphEdge | None] = {}
        self.graph_refused: dict[GraphKey, str] = {}  # why a combination runs eagerly
        self._temporal: TemporalEncoder | None = None  # a temporal codec's stream state
        self.split_index, self.split, self.codec, self.zstd_level = -1, "", "", 0
        self._codec_is_default = False  # the codec is the model's default for the split
        self.configure(split="" if split is None else split, codec=codec or "",
                       zstd_level=zstd_level)

    def configure(self, split: str | int | None = None, codec: str | None = None,
                  zstd_level: int | None = None) -> None:
        """Change the split, codec and/or zstd level; the next frame uses them.

        None keeps the current value; '' means the model's default (its card). Split
        ``input`` uploads the model-input image with an image codec (``image_codec.py``): a
        kept or default codec of the other kind becomes the new split's default. Raises
        ConfigError for a bad value and then changes nothing.
        """
        if split == "":
            split = self.card["default_split"]
        index = self.split_index if split is None else split_index(split, self.split_names)
        image = index == INPUT_SPLIT_INDEX
        name = INPUT_SPLIT if image else self.split_names[index]
        # A default codec follows the split: the card's codes its default split, which may
        # be an entropy-coded one that other splits lack.
        follows_default = codec == "" or (codec is None and (
            self._codec_is_default or is_image_codec(self.codec) != image))
        if follows_default:
            codec = default_codec(self.card, name, self._tables)
        codec = self.codec if codec is None else codec
        check_codec(codec, image, model_codecs(self._tables))
        if not image and entropy_point(base_codec(codec)) is not None \
                and self._tables is not None \
                and name != self._tables.split:
            raise ConfigError("codec", f"{codec} codes split {self._tables.split} only, not "
                              f"{name}")
        level = self.zstd_level if zstd_level is None else zstd_level
        lo, hi = ZSTD_LEVELS
        if not lo <= int(level) <= hi:
            raise ConfigError("zstd_level", f"zstd level {level} must be in [{lo}, {hi}]")
        temporal = self._temporal
        if (index, codec, int(level)) != (self.split_index, self.codec, self.zstd_level):
            # A temporal codec's stream starts over (a keyframe) with any change. Made here,
            # before anything changes: a card without the codec's tables refuses it.
            try:
                temporal = TemporalEncoder(codec, self._tables, int(level)) \
                    if is_temporal(codec) else None
            except CodecError as error:
                raise ConfigError("codec", f"{codec}: {error}") from None
        ort = self._ort
        if self._onnx is not None and index != self.split_index and not image:
            ort = OrtEdge(self._onnx, name)  # before the lock: may raise
        with self._lock:
            self._ort = ort
            self._temporal = temporal
            self.split_index = index
            self.split = name
            self.codec, self.zstd_level = codec, int(level)
            self._codec_is_default = follows_default

    @classmethod
    def from_path(cls, model: str | None, **kwargs: Any) -> EdgeRunner:
        """Load the model a setting names; the onnxruntime backend's files default to the
        model folder's ``onnx/``."""
        net, card = load_model_param(model)
        if kwargs.get("backend") == "onnxruntime":
            kwargs["onnx"] = with_model_folder(kwargs.get("onnx"), resolve_model_path(model))
        return cls(net, card, **kwargs)

    def request_keyframe(self) -> None:
        """A temporal codec codes the next streamed frame as a keyframe (the server asked)."""
        with self._lock:
            if self._temporal is not None:
                self._temporal.request_keyframe()

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray, keyframe: bool = False, streamed: bool = True
                 ) -> FeaturePacket:
        """Encode one RGB uint8 (H, W, 3) frame. With a temporal codec
        (``temporal_codec.py``): ``keyframe`` codes it self-contained (a frame the robot also
        serves itself decodes without the stream), ``streamed`` False keeps it out of the
        server's stream (a self-contained frame that does not move the stream on)."""
        start = time.perf_counter()
        image = torch.from_numpy(np.ascontiguousarray(rgb))
        size = (int(rgb.shape[0]), int(rgb.shape[1]))  # (H, W)
        (sx, sy, ox, oy), _ = letterbox_params(size[::-1], self.input_size)
        with self._lock:
            graph = self._graph_for(size)
            if self.split_index == INPUT_SPLIT_INDEX:  # image upload: no network here
                tensor = image_tensor(to_uint8(self._letterbox(image)).cpu().numpy(), self.codec)
            elif graph is not None and graph.codec is not None:
                tensor = graph.encode(image, self.zstd_level)
            elif self._temporal is not None:
                tensor = self._temporal.encode(self._prefix(image, graph), keyframe, streamed)
            else:
                tensor = encode(self._prefix(image, graph).float(), self.codec,
                                level=self.zstd_level, tables=self._tables)
            index = self.split_index
        return FeaturePacket(
            tensor=tensor, model_id=self.card.get("name", ""),
            model_fingerprint=self.card["fingerprint"], split_index=index,
            source_size=(size[1], size[0]),
            transform=(float(sx), float(sy), float(ox), float(oy)),
            edge_ms=(time.perf_counter() - start) * 1e3)

    def _letterbox(self, image: torch.Tensor) -> torch.Tensor:
        return letterbox_tensor(image.to(self.device, non_blocking=True), self.input_size)[0]

    def _prefix(self, image: torch.Tensor, graph: CudaGraphEdge | None) -> torch.Tensor:
        """The split tensor (C, h, w) of one uint8 (H, W, 3) host image (under ``_lock``)."""
        if graph is not None:
            return graph(image)[0]
        x = self._letterbox(image).to(self.dtype).unsqueeze(0)
        if self._ort is not None:
            return torch.from_numpy(self._ort(x.numpy()))[0]
        return self.model.edge(x, self.split)[0]

    def _graph_for(self, size: tuple[int, int]) -> CudaGraphEdge | None:
        """The CUDA graph (letterbox, network and, for a zstd codec, its device half) of the
        current split and codec for camera images of ``size`` (H, W), captured on its first
        frame; None off CUDA, at split ``input``, past MAX_GRAPHS, or if the capture failed
        (those run eagerly). Under ``_lock``.

        One graph launch replaces the few dozen small kernels that bound the edge on a GPU."""
        if not self._use_graph or self.split_index == INPUT_SPLIT_INDEX:
            return None
        codec = self.codec if self.codec in CODECS else None
        key = (self.split, codec, size)
        if key not in self._graphs:
            from mtl_split_core.runtime.cuda_graph import CudaGraphEdge
            graph = None
            if len(self._graphs) < MAX_GRAPHS:
                try:
                    graph = CudaGraphEdge(self.model, self.split, size, self.input_size,
                                          self.dtype, codec=codec)
                except RuntimeError as err:  # an op that cannot be captured
                    self.graph_refused[key] = str(err)
            self._graphs[key] = graph
        return self._graphs[key]


def image_tensor(image: np.ndarray, codec: str) -> EncodedTensor:
    """The wire fields of a model-input image (uint8 (H, W, 3)) at split ``input``: shape
    (3, H, W), no scale/offset, the image file as data (docs/CONTRACTS.md)."""
    empty = np.zeros(0, np.float32)
    return EncodedTensor(codec, (3, int(image.shape[0]), int(image.shape[1])), empty,
                         empty.copy(), encode_image(image, codec))


def default_codec(card: dict, split: str, tables: EntropyTables | None) -> str:
    """The model's default codec at ``split`` (``input``: its image codec). The card's codec
    is its default split's; a split without that codec's tables takes ``FALLBACK_CODEC``."""
    if split == INPUT_SPLIT:
        return str(card.get("image_codec") or DEFAULT_IMAGE_CODEC)
    return split_default(str(card.get("codec", "q8-zstd/1")), tables, split)


def check_codec(codec: str, image: bool, feature_codecs: Sequence[str] = CODECS) -> None:
    """ConfigError unless ``codec`` is one of the model's ``feature_codecs`` (``image``
    False) or an image codec this build has (``image`` True: split ``input``)."""
    if image and not is_image_codec(codec):
        raise ConfigError("codec", f"split {INPUT_SPLIT} sends an image: codec {codec!r} "
                          f"must be an image codec like {DEFAULT_IMAGE_CODEC} "
                          f"('<webp|jpeg|avif>-q<1..100>/1')")
    if not image and codec not in feature_codecs and not (
            is_temporal(codec) and _temporal_base(codec) in feature_codecs):
        raise ConfigError("codec", f"unknown codec {codec!r}; expected one of "
                          f"{', '.join(feature_codecs)}, or a temporal codec "
                          f"'t<N>-s<T>-<one of them>/1' or 't<N>-c<H>-ebc-<k>/1' (image "
                          f"codecs like {DEFAULT_IMAGE_CODEC} go with split {INPUT_SPLIT})")


def _temporal_base(codec: str) -> str | None:
    """The base codec of a well-formed temporal codec id, None otherwise."""
    try:
        return parse_temporal(codec).base
    except CodecError:
        return None


def known_codec(codec: str) -> bool:
    """Whether ``codec`` is a feature codec (eb-<k>/1 included: the model decides), or an
    image codec (a node parameter's check)."""
    return codec in CODECS or codec in ENTROPY_CODECS or is_image_codec(codec) \
        or _temporal_base(codec) is not None


def split_index(split: str | int, names: list[str]) -> int:
    """Index of a split given by name ('s8') or index (1 or '1'); ``input`` (image upload)
    is ``INPUT_SPLIT_INDEX``."""
    if split == INPUT_SPLIT:
        return INPUT_SPLIT_INDEX
    if isinstance(split, str) and split.isdigit():
        split = int(split)
    if isinstance(split, int):
        if 0 <= split < len(names):
            return split
    elif split in names:
        return names.index(split)
    raise ConfigError("split", f"unknown split {split!r}; expected one of {', '.join(names)} "
                     f"(or an index 0..{len(names) - 1}), or {INPUT_SPLIT} (image upload)")
