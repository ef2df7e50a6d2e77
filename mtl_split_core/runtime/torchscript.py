"""The server half on the CPU as a frozen TorchScript trace: eager PyTorch runs each module's
Python and its unfused convolutions; a trace frozen and optimised for inference folds the
batch norms into the convolutions and runs them through oneDNN, with no Python per layer.
On the 2-core CPU it is ~1.5x eager at batch 4 and ~1.9x at batch 1, outputs within 1e-4 of
eager (bench/results/cpu_inference).

One trace per (split, focal given or not), made on first use of a key (``prepare`` does it
ahead of time); batch sizes vary freely. The traces run with TorchScript's profiling executor
off (``optimized_execution(False)``): freezing has already optimised the graph, and the
executor would otherwise re-profile and re-optimise it for every new batch size, a pause of
seconds on a loaded 2-core machine.
"""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from mtl_split_core.model.network import MultiTaskSplitNet


class FrozenTrace:
    """``module`` traced on ``example``, frozen and optimised for inference; called with the
    same number of tensors (any batch size), it returns what the module returns."""

    def __init__(self, module: nn.Module, example: tuple[torch.Tensor, ...]) -> None:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes about Python ints in shapes
            traced = torch.jit.trace(module.eval(), example, check_trace=False)
            self.script = torch.jit.optimize_for_inference(torch.jit.freeze(traced))

    def __call__(self, *args: torch.Tensor) -> Any:
        with torch.jit.optimized_execution(False), torch.no_grad():
            return self.script(*args)


class _ServerHalf(nn.Module):
    """``model.server`` at one split with its outputs in ``names`` order (what a trace takes)."""

    def __init__(self, model: MultiTaskSplitNet, split: str, names: list[str]) -> None:
        super().__init__()
        self.model, self.split, self.names = model, split, names

    def forward(self, z: torch.Tensor, focal: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, ...]:
        out = self.model.server(z, self.split, focal=focal)
        return tuple(out[name] for name in self.names)


class TorchScriptServer:
    """``model.server(z, split, focal=...)`` from frozen traces (CPU, float32).

    ``prepare`` traces ahead of time (the node: the default split, before its first frame).
    A key met first in a batch runs eager while a background thread traces it, so a new split
    never stalls the inference worker for the seconds a trace takes on a loaded machine.
    """

    def __init__(self, model: MultiTaskSplitNet, input_size: tuple[int, int]) -> None:
        self.model, self.input_size = model, input_size
        self._scripts: dict[tuple[str, bool], tuple[FrozenTrace, list[str]]] = {}
        self._tracing: set[tuple[str, bool]] = set()
        self._lock = threading.Lock()

    def _add(self, key: tuple[str, bool]) -> None:
        traced = self._trace(*key)
        with self._lock:
            self._scripts[key] = traced
            self._tracing.discard(key)

    def _trace(self, split: str, with_focal: bool) -> tuple[FrozenTrace, list[str]]:
        z = torch.zeros(2, *self.model.split_shape(split, self.input_size))
        focal = torch.ones(2) if with_focal else None
        with torch.inference_mode(False), torch.no_grad():
            names = sorted(self.model.server(z, split, focal=focal))
        example = (z,) if focal is None else (z, focal)
        return FrozenTrace(_ServerHalf(self.model, split, names), example), names

    def prepare(self, splits: list[str]) -> None:
        """Trace ``splits`` now, with and without focal lengths."""
        for split in splits:
            for key in ((split, True), (split, False)):
                if not self.ready(*key):
                    self._add(key)

    def ready(self, split: str, with_focal: bool) -> bool:
        with self._lock:
            return (split, with_focal) in self._scripts

    def __call__(self, z: torch.Tensor, split: str, focal: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
        key = (split, focal is not None)
        with self._lock:
            traced = self._scripts.get(key)
            start = traced is None and key not in self._tracing
            if start:
                self._tracing.add(key)
        if traced is None:
            if start:
                threading.Thread(target=self._add, args=(key,), name="torchscript-trace",
                                 daemon=True).start()
            return self.model.server(z, split, focal=focal)
        script, names = traced
        out = script(z) if focal is None else script(z, focal.to(torch.float32))
        return dict(zip(names, out))
