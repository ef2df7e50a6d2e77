"""One device -> host copy per batch: the post-processed tensors of a batch travel together.

A batch's post-processing (runtime/server.py) leaves its results on the model's device: a
handful of batched tensors (boxes, class maps, depth, colour images, point grids). Copying each
one with ``.cpu()`` would make a copy and a wait per tensor, per frame. ``HostCopy`` instead
packs every tensor into one device byte buffer as it is added (so a CUDA graph replay that
reuses its output buffers cannot change what was added), then ``fetch`` copies all of it into
one pinned host buffer with one ``non_blocking`` copy and one wait, and hands back numpy views
of that buffer. On the CPU there is nothing to copy: ``fetch`` returns the tensors' own memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import torch

ALIGN = 16  # bytes: every array starts aligned for any dtype numpy views it as


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


class HostCopy:
    """Tensors gathered on one device, fetched to the host together (module docstring)."""

    def __init__(self, device: torch.device | str, pack: bool | None = None) -> None:
        """``pack`` (default: off the CPU) packs and copies as on a GPU, wherever the tensors
        are (a test of the packing on a machine without one)."""
        self.device = torch.device(device)
        self._cuda = self.device.type == "cuda"
        self._on_host = not (self._cuda if pack is None else pack)
        self._tensors: list[torch.Tensor] = []           # CPU: the tensors themselves
        self._buffers: list[torch.Tensor] = []           # CUDA: one packed byte buffer per add
        self._layout: list[tuple[int, int, torch.dtype, tuple[int, ...]]] = []  # buffer, offset

    def add(self, tensors: Sequence[torch.Tensor]) -> list[int]:
        """Stage ``tensors`` (on this device); returns their indices in ``fetch``'s list. On a
        GPU they are copied into a fresh buffer now (one small kernel each): later kernels may
        reuse their memory."""
        first = len(self._layout) + len(self._tensors)
        if self._on_host:
            self._tensors += [t.detach() for t in tensors]
            return list(range(first, first + len(tensors)))
        offsets, total = [], 0
        for t in tensors:
            offsets.append(total)
            total += _aligned(t.numel() * t.element_size())
        buffer = torch.empty(total, dtype=torch.uint8, device=self.device)
        for t, offset in zip(tensors, offsets):
            nbytes = t.numel() * t.element_size()
            if nbytes:
                buffer[offset:offset + nbytes].view(t.dtype).view(t.shape).copy_(t)
            self._layout.append((len(self._buffers), offset, t.dtype, tuple(t.shape)))
        self._buffers.append(buffer)
        return list(range(first, first + len(tensors)))

    def fetch(self) -> list[np.ndarray]:
        """Every added tensor as a numpy array, in order: one copy and one wait for all."""
        if self._on_host:
            return [t.numpy() for t in self._tensors]
        if not self._buffers:
            return []
        device_buffer = (self._buffers[0] if len(self._buffers) == 1
                         else torch.cat(self._buffers))
        starts = np.cumsum([0] + [b.numel() for b in self._buffers])
        host = torch.empty(device_buffer.numel(), dtype=torch.uint8, pin_memory=self._cuda)
        host.copy_(device_buffer, non_blocking=self._cuda)
        if self._cuda:
            torch.cuda.current_stream(self.device).synchronize()
        raw = host.numpy()
        out = []
        for index, offset, dtype, shape in self._layout:
            start = int(starts[index]) + offset
            nbytes = int(np.prod(shape, dtype=np.int64)) * _itemsize(dtype)
            out.append(raw[start:start + nbytes].view(_numpy_dtype(dtype)).reshape(shape))
        return out


@cache  # per output tensor and batch on the server's worker: a lookup, not an allocation
def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


@cache
def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()
