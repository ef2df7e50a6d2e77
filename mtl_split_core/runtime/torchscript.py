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

    ``prepare`` traces now, ``prepare_in_background`` in a thread (the node: the default split
    at start-up). A split met first in a batch runs eager while a background thread traces it,
    so neither the node's start nor the inference worker waits the seconds a trace takes on a
    loaded machine.
    """

    def __init__(self, model: MultiTaskSplitNet, input_size: tuple[int, int]) -> None:
        self.model, self.input_size = model, input_size
        self._scripts: dict[tuple[str, bool], tuple[FrozenTrace, list[str]]] = {}
        self._tracing: set[tuple[str, bool]] = set()
        self.failed: dict[tuple[str, bool], str] = {}  # keys that could not be traced: eager
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []  # background traces, joined by close()

    def _add(self, keys: list[tuple[str, bool]]) -> None:
        for key in keys:
            try:
                traced = self._trace(*key)
            except Exception as err:  # noqa: BLE001 - that key stays eager; the reason is kept
                self.failed[key] = f"{type(err).__name__}: {err}"
                continue
            with self._lock:
                self._scripts[key] = traced
                self._tracing.discard(key)

    def _claim(self, key: tuple[str, bool]) -> bool:
        """Whether the caller is to trace ``key`` (nobody has, nor is)."""
        with self._lock:
            if key in self._scripts or key in self._tracing:
                return False
            self._tracing.add(key)
            return True

    def _trace(self, split: str, with_focal: bool) -> tuple[FrozenTrace, list[str]]:
        z = torch.zeros(2, *self.model.split_shape(split, self.input_size))
        focal = torch.ones(2) if with_focal else None
        with torch.inference_mode(False), torch.no_grad():
            names = sorted(self.model.server(z, split, focal=focal))
        example = (z,) if focal is None else (z, focal)
        return FrozenTrace(_ServerHalf(self.model, split, names), example), names

    def prepare(self, splits: list[str]) -> None:
        """Trace ``splits`` now, with and without focal lengths."""
        self._add([key for key in _keys(splits) if self._claim(key)])

    def prepare_in_background(self, splits: list[str]) -> None:
        """Trace ``splits`` in a background thread (eager until each is ready): a node's
        start-up does not wait, and its executor spins meanwhile."""
        keys = [key for key in _keys(splits) if self._claim(key)]
        if keys:
            thread = threading.Thread(target=self._add, args=(keys,), name="torchscript-trace",
                                      daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Wait for the background traces: a process that exits while one runs in torch's
        C++ code aborts ("terminate called without an active exception")."""
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout)

    def ready(self, split: str, with_focal: bool) -> bool:
        with self._lock:
            return (split, with_focal) in self._scripts

    def __call__(self, z: torch.Tensor, split: str, focal: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
        with self._lock:
            traced = self._scripts.get((split, focal is not None))
        if traced is None:
            self.prepare_in_background([split])  # both focal keys: the other comes soon
            return self.model.server(z, split, focal=focal)
        script, names = traced
        out = script(z) if focal is None else script(z, focal.to(torch.float32))
        return dict(zip(names, out))


def _keys(splits: list[str]) -> list[tuple[str, bool]]:
    return [(split, with_focal) for split in splits for with_focal in (True, False)]
