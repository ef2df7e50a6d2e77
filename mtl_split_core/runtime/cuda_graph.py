"""Replay the edge prefix as a CUDA graph: the prefix is a few dozen small kernels, so eager
PyTorch is bound by kernel launches; one graph launch removes that overhead.

Shapes are fixed per graph (one graph per input size), the input is copied into a static
buffer and the output is read from a static buffer — clone it before the next call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from mtl_split_core.model.network import MultiTaskSplitNet


class CudaGraphEdge:
    """``model.edge(x, split)`` captured once as a CUDA graph for one input size."""

    def __init__(self, model: MultiTaskSplitNet, split: str, input_hw: tuple[int, int],
                 dtype: torch.dtype = torch.float16, warmup: int = 3) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.model, self.split = model, split
        dev = next(model.parameters()).device
        self.static_in = torch.zeros(1, 3, *input_hw, device=dev, dtype=dtype).contiguous(
            memory_format=torch.channels_last)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(warmup):  # cuDNN picks its algorithms outside the capture
                model.edge(self.static_in, split)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.static_out = model.edge(self.static_in, split)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out
