"""The edge half at run time: image -> letterbox -> backbone prefix (+bottleneck) -> codec."""

from __future__ import annotations

import time

import numpy as np
import torch

from mtl_split_core.codec import CODECS, encode
from mtl_split_core.preprocess import letterbox_tensor
from mtl_split_core.runtime.device import resolve_device, resolve_dtype
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.model_files import load_model_param
from mtl_split_core.runtime.packet import FeaturePacket


class EdgeRunner:
    """Turns RGB frames into FeaturePackets. One instance per model, split and codec."""

    def __init__(self, model, card: dict, split: str | int | None = None,
                 device: str = "auto", precision: str = "fp32", codec: str | None = None,
                 zstd_level: int = 3, cuda_graphs: bool = True):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(precision, self.device)
        self.card = card
        self.split_names = list(model.split_names)
        self.split_index = split_index(split if split not in (None, "") else
                                       card["default_split"], self.split_names)
        self.split = self.split_names[self.split_index]
        self.codec = codec or card.get("codec", "q8-zstd/1")
        if self.codec not in CODECS:
            raise ConfigError("codec", f"unknown codec {self.codec!r}; expected one of {', '.join(CODECS)}")
        if not 1 <= int(zstd_level) <= 22:
            raise ConfigError("zstd_level", f"zstd level {zstd_level} must be in [1, 22]")
        self.zstd_level = int(zstd_level)
        self.model = model.to(self.device, self.dtype).eval()
        self.input_size = tuple(card["input_size"])  # (W, H)
        # The letterbox makes every frame the same size, so one CUDA graph serves any camera:
        # it removes the kernel-launch overhead that dominates the prefix on a GPU.
        self._graph = None
        if cuda_graphs and self.device.type == "cuda":
            from mtl_split_core.runtime.cuda_graph import CudaGraphEdge
            self.model = self.model.to(memory_format=torch.channels_last)
            w, h = self.input_size
            self._graph = CudaGraphEdge(self.model, self.split, (h, w), self.dtype)

    @classmethod
    def from_path(cls, model: str | None, **kwargs) -> "EdgeRunner":
        return cls(*load_model_param(model), **kwargs)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> FeaturePacket:
        """Encode one RGB uint8 (H, W, 3) frame."""
        start = time.perf_counter()
        image = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device, non_blocking=True)
        x, transform = letterbox_tensor(image, self.input_size)
        x = x.to(self.dtype).unsqueeze(0)
        z = (self._graph(x) if self._graph is not None else self.model.edge(x, self.split))[0]
        tensor = encode(z.float(), self.codec, level=self.zstd_level)
        return FeaturePacket(
            tensor=tensor, model_id=self.card.get("name", ""),
            model_fingerprint=self.card["fingerprint"], split_index=self.split_index,
            source_size=(int(rgb.shape[1]), int(rgb.shape[0])),
            transform=tuple(float(v) for v in transform),
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
