"""Replay the edge prefix as a CUDA graph: the prefix is a few dozen small kernels, so eager
PyTorch is bound by kernel launches; one graph launch removes that overhead.

Shapes are fixed per graph (one graph per input size), the input is copied into a static
buffer and the output is read from a static buffer — clone it before the next call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from mtl_split_core.codec import EncodedTensor, device_encode, finish_encode
from mtl_split_core.image_codec import INPUT_SPLIT
from mtl_split_core.preprocess import letterbox_tensor

if TYPE_CHECKING:
    from mtl_split_core.model.network import MultiTaskSplitNet

T = TypeVar("T")


def capture(device: torch.device, run: Callable[[], T], warmup: int
            ) -> tuple[torch.cuda.CUDAGraph, T]:
    """``run`` warmed up on a side stream (cuDNN picks its algorithms outside the capture),
    then captured as a graph; its output lives in the graph's static memory. Everything on
    ``device``'s streams: the current device may be another GPU (a server on cuda:1)."""
    with torch.cuda.device(device), torch.inference_mode():
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                run()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = run()
    return graph, out


class CudaGraphEdge:
    """The edge for camera images of one size, captured once as a CUDA graph: the letterbox,
    ``model.edge(x, split)`` and, with a zstd ``codec`` (codec.CODECS), the codec's device half
    (codec.device_encode: statistics, quantization, packing). A frame then costs one copy to
    the device, one graph launch and one copy of its codes back (``encode``), instead of a few
    dozen small kernel launches and two synchronisations.
    """

    def __init__(self, model: MultiTaskSplitNet, split: str, source_hw: tuple[int, int],
                 input_wh: tuple[int, int], dtype: torch.dtype = torch.float16,
                 warmup: int = 3, codec: str | None = None) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.model, self.split, self.codec = model, split, codec
        self.device = next(model.parameters()).device
        self.static_in = torch.zeros(*source_hw, 3, device=self.device, dtype=torch.uint8)
        shapes: list[tuple[int, int, int]] = []

        def run() -> torch.Tensor:
            x = letterbox_tensor(self.static_in, input_wh)[0].to(dtype).unsqueeze(0)
            z = model.edge(x.contiguous(memory_format=torch.channels_last), split)
            shapes.append((int(z.shape[1]), int(z.shape[2]), int(z.shape[3])))
            return z if codec is None else device_encode(z[0].float(), codec)

        self.graph, self.static_out = capture(self.device, run, warmup)
        self.feature_shape = shapes[-1]  # (C, h, w) of the split tensor

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """The split tensor (1, C, h, w), or with a codec the encoded buffer, of one uint8
        (H, W, 3) image (any device), in the graph's static memory: read it before the next
        call."""
        with torch.cuda.device(self.device):
            self.static_in.copy_(image)
            self.graph.replay()
        return self.static_out

    def encode(self, image: torch.Tensor, level: int) -> EncodedTensor:
        """One image through the graph, then the codec's host half (checks, zstd)."""
        if self.codec is None:
            raise RuntimeError("this graph was captured without a codec")
        return finish_encode(self(image).cpu().numpy(), self.codec, self.feature_shape, level)


# Batch sizes the server captures graphs for; a batch is padded up to the next one.
SERVER_BUCKETS = (1, 2, 4, 8, 16, 32)


def batch_bucket(n: int) -> int:
    """The smallest captured batch size that holds ``n`` frames (1 <= n <= 32)."""
    for bucket in SERVER_BUCKETS:
        if n <= bucket:
            return bucket
    raise ValueError(f"batch of {n} exceeds the largest graph bucket {SERVER_BUCKETS[-1]}")


class PostCaptureError(RuntimeError):
    """A post-processing step could not be captured in a CUDA graph (the caller runs it
    eagerly after the server half's own graph)."""


# Post-processing steps (``post_key``s, e.g. one per camera geometry) captured with the server
# half at most: each adds a graph per split and bucket; past this many, ``fuses`` says no and
# the caller post-processes eagerly.
MAX_POST_KEYS = 8


class _ServerGraph:
    """One capture of ``model.server`` for a fixed split, batch size and focal presence, and
    of ``post`` applied to its outputs if given. At split ``input`` (image upload) the whole
    network: ``model.edge`` to ``input_split``, then that split's server half."""

    def __init__(self, model: MultiTaskSplitNet, split: str, shape: tuple[int, ...],
                 with_focal: bool, dtype: torch.dtype, warmup: int,
                 post: Callable[[dict[str, torch.Tensor]], Any] | None = None,
                 input_split: str = "") -> None:
        self.device = next(model.parameters()).device
        self.static_in = torch.zeros(shape, device=self.device, dtype=dtype)
        # Padding rows keep a focal of 1 (finite): their outputs are discarded.
        self.static_focal = (torch.ones(shape[0], device=self.device, dtype=torch.float32)
                             if with_focal else None)

        def run() -> Any:
            if split == INPUT_SPLIT:
                z = model.edge(self.static_in, input_split)
                out = model.server(z, input_split, focal=self.static_focal)
            else:
                out = model.server(self.static_in, split, focal=self.static_focal)
            return out if post is None else post(out)

        self.graph, self.static_out = capture(self.device, run, warmup)


class CudaGraphServer:
    """``model.server(z, split, focal=...)`` replayed from CUDA graphs captured per (split,
    batch-size bucket, focal given or not), padded to the bucket; with ``post`` the graph also
    holds the post-processing of the outputs (one graph launch instead of dozens of small
    kernels, each a launch the host pays for: the largest server hop of one robot's frame on
    the H100, docs/BENCHMARKS.md).

    Graphs are captured on first use of a key (``capture`` does it ahead of time for the
    server half alone). The outputs are views of static buffers: read them before the next
    call. Split ``input`` (uploaded model-input images, (N, 3, H, W)) replays the whole
    network, edge prefix to ``input_split`` included: eager, the prefix alone was a few dozen
    kernel launches per batch.
    """

    def __init__(self, model: MultiTaskSplitNet, input_size: tuple[int, int],
                 dtype: torch.dtype = torch.float16, warmup: int = 3, input_split: str = ""
                 ) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.model, self.input_size, self.input_split = model, input_size, input_split
        self.dtype, self.warmup = dtype, warmup
        self._graphs: dict[tuple[str, int, bool, Hashable], _ServerGraph] = {}
        self._post_keys: set[Hashable] = set()
        # post_key -> why its capture failed: never tried again (the caller post-processes
        # those eagerly, as it does past MAX_POST_KEYS).
        self.refused: dict[Hashable, str] = {}

    def fuses(self, post_key: Hashable) -> bool:
        """Whether a call with ``post_key`` may capture its post-processing (a known key, or
        room for one more, and no failed capture of it)."""
        return post_key not in self.refused and (
            post_key in self._post_keys or len(self._post_keys) < MAX_POST_KEYS)

    def _graph(self, split: str, bucket: int, with_focal: bool,
               post: Callable[[dict[str, torch.Tensor]], Any] | None = None,
               post_key: Hashable = None) -> _ServerGraph:
        key = (split, bucket, with_focal, post_key)
        graph = self._graphs.get(key)
        if graph is None:
            w, h = self.input_size
            shape = (bucket, *((3, h, w) if split == INPUT_SPLIT
                               else self.model.split_shape(split, self.input_size)))
            try:
                graph = _ServerGraph(self.model, split, shape, with_focal, self.dtype,
                                     self.warmup, post, self.input_split)
            except RuntimeError as err:
                if post is None:
                    raise
                # A post-processing step that cannot be captured (an op that waits for
                # the device): ``fuses`` says no from now on.
                self.refused[post_key] = str(err)
                raise PostCaptureError(str(err)) from err
            self._graphs[key] = graph
            if post_key is not None:
                self._post_keys.add(post_key)
        return graph

    def capture(self, splits: list[str], with_focal: bool = True) -> None:
        """Capture every bucket of ``splits`` now (no capture pause on the first frames)."""
        for split in splits:
            for bucket in SERVER_BUCKETS:
                self._graph(split, bucket, with_focal)

    @torch.inference_mode()
    def __call__(self, z: torch.Tensor, split: str, focal: torch.Tensor | None = None,
                 post: Callable[[dict[str, torch.Tensor]], Any] | None = None,
                 post_key: Hashable = None) -> Any:
        """``z`` (N, C, H, W) with N <= 32; ``focal`` (N,) model-input pixels or None. Without
        ``post``: the outputs {name: (N, ...)}; with it, ``post(outputs)`` (lists, tuples and
        dicts of frame-first tensors, or None), captured once per ``post_key`` (``post``
        must be the same computation for one key; ``fuses`` first)."""
        n = int(z.shape[0])
        graph = self._graph(split, batch_bucket(n), focal is not None, post,
                            None if post is None else post_key)
        with torch.cuda.device(graph.device):
            graph.static_in[:n].copy_(z)
            if graph.static_focal is not None and focal is not None:
                graph.static_focal[:n].copy_(focal)
            graph.graph.replay()
        return first_rows(graph.static_out, n)


def first_rows(tree: Any, n: int) -> Any:
    """Every tensor of ``tree`` (nested lists, tuples, dicts; None kept) cut to its first
    ``n`` rows: a bucket's padding rows dropped."""
    if isinstance(tree, torch.Tensor):
        return tree[:n]
    if isinstance(tree, dict):
        return {k: first_rows(v, n) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(first_rows(v, n) for v in tree)
    return tree
