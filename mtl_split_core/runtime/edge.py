"""The edge half at run time: image -> letterbox -> backbone prefix (+bottleneck) -> codec."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mtl_split_core.codec import ZSTD_LEVELS, encode, entropy_point, model_codecs
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.preprocess import letterbox_tensor
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
from mtl_split_core.runtime.packet import FeaturePacket

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
        self._graph: CudaGraphEdge | None = None
        self.split_index, self.split, self.codec, self.zstd_level = -1, "", "", 0
        self.configure(split="" if split is None else split, codec=codec or "",
                       zstd_level=zstd_level)

    def configure(self, split: str | int | None = None, codec: str | None = None,
                  zstd_level: int | None = None) -> None:
        """Change the split, codec and/or zstd level; the next frame uses them.

        None keeps the current value; '' means the model's default (its card). Raises
        ConfigError for a bad value and then changes nothing.
        """
        if split == "":
            split = self.card["default_split"]
        if codec == "":
            codec = self.card.get("codec", "q8-zstd/1")
        index = self.split_index if split is None else split_index(split, self.split_names)
        codec = self.codec if codec is None else codec
        codecs = model_codecs(self._tables)
        if codec not in codecs:
            raise ConfigError("codec", f"unknown codec {codec!r}; expected one of "
                              f"{', '.join(codecs)}")
        if entropy_point(codec) is not None and self._tables is not None \
                and self.split_names[index] != self._tables.split:
            raise ConfigError("codec", f"{codec} codes split {self._tables.split} only, not "
                              f"{self.split_names[index]}")
        level = self.zstd_level if zstd_level is None else zstd_level
        lo, hi = ZSTD_LEVELS
        if not lo <= int(level) <= hi:
            raise ConfigError("zstd_level", f"zstd level {level} must be in [{lo}, {hi}]")
        ort = self._ort
        if self._onnx is not None and index != self.split_index:
            ort = OrtEdge(self._onnx, self.split_names[index])  # before the lock: may raise
        with self._lock:
            self._ort = ort
            if index != self.split_index and self._use_graph:
                # The letterbox makes every frame the same size, so one CUDA graph per split
                # serves any camera: it removes the kernel-launch overhead that dominates the
                # prefix on a GPU.
                from mtl_split_core.runtime.cuda_graph import CudaGraphEdge
                w, h = self.input_size
                self._graph = CudaGraphEdge(self.model, self.split_names[index], (h, w),
                                            self.dtype)
            self.split_index, self.split = index, self.split_names[index]
            self.codec, self.zstd_level = codec, int(level)

    @classmethod
    def from_path(cls, model: str | None, **kwargs: Any) -> EdgeRunner:
        """Load the model a setting names; the onnxruntime backend's files default to the
        model folder's ``onnx/``."""
        net, card = load_model_param(model)
        if kwargs.get("backend") == "onnxruntime":
            kwargs["onnx"] = with_model_folder(kwargs.get("onnx"), resolve_model_path(model))
        return cls(net, card, **kwargs)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> FeaturePacket:
        """Encode one RGB uint8 (H, W, 3) frame."""
        start = time.perf_counter()
        image = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device, non_blocking=True)
        x, (sx, sy, ox, oy) = letterbox_tensor(image, self.input_size)
        x = x.to(self.dtype).unsqueeze(0)
        with self._lock:
            if self._ort is not None:
                z = torch.from_numpy(self._ort(x.numpy()))[0]
            elif self._graph is not None:
                z = self._graph(x)[0]
            else:
                z = self.model.edge(x, self.split)[0]
            tensor = encode(z.float(), self.codec, level=self.zstd_level, tables=self._tables)
            index = self.split_index
        return FeaturePacket(
            tensor=tensor, model_id=self.card.get("name", ""),
            model_fingerprint=self.card["fingerprint"], split_index=index,
            source_size=(int(rgb.shape[1]), int(rgb.shape[0])),
            transform=(float(sx), float(sy), float(ox), float(oy)),
            edge_ms=(time.perf_counter() - start) * 1e3)


def split_index(split: str | int, names: list[str]) -> int:
    """Index of a split given by name ('s8') or index (1 or '1')."""
    if isinstance(split, str) and split.isdigit():
        split = int(split)
    if isinstance(split, int):
        if 0 <= split < len(names):
            return split
    elif split in names:
        return names.index(split)
    raise ConfigError("split", f"unknown split {split!r}; expected one of {', '.join(names)} "
                     f"(or an index 0..{len(names) - 1})")
