"""Inference backends of the runners: ``torch`` (the model itself) or ``onnxruntime`` (the
files ``mtl-split export`` wrote, found in MODEL_DIR/onnx/ or an explicit folder).

An export is checked against the served model before use: its card's fingerprint and input
size, and each file's sha256. Anything missing or different is an ``OnnxFileError`` (a
ConfigError of the ``onnx_dir`` setting): one line naming the file and the fingerprint expected.
Providers: CPU always; CUDA and TensorRT only when this onnxruntime build lists them and the
device is not ``cpu``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl_split_core.export import (
    EDGE_INPUT,
    FOCAL_INPUT,
    SERVER_INPUT,
    ExportError,
    read_export_card,
    sha256_file,
)
from mtl_split_core.runtime.errors import ConfigError

BACKENDS = ("torch", "onnxruntime")
ONNX_SUBDIR = "onnx"
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


class OnnxFileError(ConfigError):
    """An exported file (or its card) that is missing, corrupt or from another model."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__("onnx_dir", f"{path}: {message}")
        self.path = str(path)


@dataclass(frozen=True)
class OrtOptions:
    """How the onnxruntime backend runs. ``folder`` '' = MODEL_DIR/onnx (``from_path``);
    ``threads`` 0 = onnxruntime's default; ``engine_cache``: TensorRT engine cache folder
    ('' = none; unused by the CPU and CUDA providers). ``spinning``: let idle intra-op threads
    busy-wait for the next run (onnxruntime's default; off here: on a small robot CPU the
    spinning threads take the cores from DDS, the codec and any torch work in the process)."""

    folder: str = ""
    engine_cache: str = ""
    threads: int = 0
    optimization: str = "all"
    spinning: bool = False


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError("backend", f"unknown backend {backend!r}; expected one of "
                          f"{', '.join(BACKENDS)}")
    return backend


def with_model_folder(options: OrtOptions | None, model_dir: str | Path) -> OrtOptions:
    """``options`` with an empty folder replaced by the model's own ``onnx/`` folder."""
    options = options or OrtOptions()
    if options.folder:
        return options
    return replace(options, folder=str(Path(model_dir) / ONNX_SUBDIR))


def providers(device: torch.device, engine_cache: str = "", fp16: bool = False,
              strict: bool = True) -> list[Any]:
    """Execution providers for ``device``: TensorRT and CUDA when listed (not for cpu), then
    CPU. A CUDA device without a CUDA provider is a ConfigError when ``strict`` (the user
    asked for cuda), else CPU (device ``auto`` on a machine whose torch has CUDA)."""
    import onnxruntime as ort
    available = ort.get_available_providers()
    chosen: list[Any] = []
    if device.type == "cuda":
        index = device.index or 0
        if "TensorrtExecutionProvider" in available:
            trt: dict[str, Any] = {"device_id": index, "trt_fp16_enable": fp16}
            if engine_cache:
                Path(engine_cache).mkdir(parents=True, exist_ok=True)
                trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=engine_cache)
            chosen.append(("TensorrtExecutionProvider", trt))
        if "CUDAExecutionProvider" in available:
            chosen.append(("CUDAExecutionProvider", {"device_id": index}))
        if not chosen and strict:
            raise ConfigError("device", f"backend onnxruntime on {device}: this onnxruntime "
                              f"has only {', '.join(available)}; use device cpu")
    return chosen + ["CPUExecutionProvider"]


def _session_options(options: OrtOptions) -> Any:
    import onnxruntime as ort
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if options.optimization not in levels:
        raise ConfigError("onnx_optimization", f"{options.optimization!r}: expected one of "
                          f"{', '.join(OPTIMIZATION_LEVELS)}")
    if options.threads < 0:
        raise ConfigError("onnx_threads", f"{options.threads} must be >= 0 (0 = default)")
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[options.optimization]
    so.intra_op_num_threads = options.threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning",
                                "1" if options.spinning else "0")
    return so


class OnnxExport:
    """An export folder checked against the served model; sessions per split, made on first
    use and kept (thread-safe)."""

    def __init__(self, card: dict[str, Any], options: OrtOptions, device: torch.device,
                 fp16: bool = False, strict_device: bool = True) -> None:
        if not options.folder:
            raise ConfigError("onnx_dir", "backend onnxruntime needs the export folder (the "
                              "model folder's onnx/ when the runner loads a model by path)")
        self.folder = Path(options.folder)
        self.options = options
        self._so = _session_options(options)
        self._providers = providers(device, options.engine_cache, fp16, strict_device)
        expected = card["fingerprint"]
        try:
            self.card = read_export_card(self.folder)
        except ExportError as err:
            raise OnnxFileError(self.folder, f"{err}; expected an export of model "
                                f"fingerprint {expected}") from None
        name = self.folder / "export.json"
        got = self.card.get("model_fingerprint")
        if got != expected:
            raise OnnxFileError(name, f"exported from model fingerprint {got!r}, expected "
                                f"{expected} ({card.get('name')}); re-run `mtl-split export`")
        if list(self.card.get("input_size", [])) != list(card["input_size"]):
            raise OnnxFileError(name, f"input size {self.card.get('input_size')} differs from "
                                f"the model's {card['input_size']} (fingerprint {expected})")
        self.splits: dict[str, dict[str, Any]] = dict(self.card.get("splits") or {})
        self.precision = str(self.card.get("precision", "fp32"))
        self.reference_focal = self.card.get("reference_focal")
        self._fingerprint = expected
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], Any] = {}

    def has(self, split: str) -> bool:
        return split in self.splits

    def session(self, split: str, half: str) -> Any:
        """The onnxruntime session of ``half`` ('edge' | 'server') at ``split``."""
        with self._lock:
            key = (split, half)
            if key not in self._sessions:
                self._sessions[key] = self._load(split, half)
            return self._sessions[key]

    def _load(self, split: str, half: str) -> Any:
        import onnxruntime as ort
        if split not in self.splits:
            raise OnnxFileError(self.folder / "export.json", f"split {split} was not exported "
                                f"(has {', '.join(self.splits) or 'none'}); expected an export "
                                f"of model fingerprint {self._fingerprint} with that split")
        entry = self.splits[split].get(half) or {}
        path = self.folder / str(entry.get("file", f"{half}_{split}.onnx"))
        if not path.is_file():
            raise OnnxFileError(path, f"missing; expected the {half} half of split {split} "
                                f"for model fingerprint {self._fingerprint}")
        if sha256_file(path) != entry.get("sha256"):
            raise OnnxFileError(path, f"changed since export (sha256 differs from "
                                f"export.json); re-export for model fingerprint "
                                f"{self._fingerprint}")
        try:
            return ort.InferenceSession(str(path), self._so, providers=self._providers)
        except Exception as err:  # noqa: BLE001 - any unloadable file is the same user error
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise OnnxFileError(path, f"onnxruntime cannot load it ({first}); expected an "
                                f"export of model fingerprint {self._fingerprint}") from None

    def providers_in_use(self, split: str, half: str) -> list[str]:
        return list(self.session(split, half).get_providers())


class OrtEdge:
    """The edge half at one split: float32 (N, 3, H, W) in [0, 1] -> (N, C, h, w)."""

    def __init__(self, export: OnnxExport, split: str) -> None:
        self.session = export.session(split, "edge")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {EDGE_INPUT: np.ascontiguousarray(x, np.float32)})[0]


class OrtServer:
    """The server half at one split: (N, C, h, w) [+ focal (N,)] -> the model's output dict.

    A ``focal`` of None means the reference camera: the graph gets the reference focal, which
    scales depth by exactly 1 (as torch does when given no focal)."""

    def __init__(self, export: OnnxExport, split: str) -> None:
        self.session = export.session(split, "server")
        self.names = [o.name for o in self.session.get_outputs()]
        self.focal_input = any(i.name == FOCAL_INPUT for i in self.session.get_inputs())
        self.reference_focal = export.reference_focal

    def __call__(self, z: np.ndarray, focal: float | np.ndarray | None = None
                 ) -> dict[str, torch.Tensor]:
        feeds = {SERVER_INPUT: np.ascontiguousarray(z, np.float32)}
        if self.focal_input:
            value = self.reference_focal if focal is None else focal
            feeds[FOCAL_INPUT] = np.broadcast_to(np.asarray(value, np.float32),
                                                 (len(z),)).copy()
        return {name: torch.from_numpy(out) for name, out in
                zip(self.names, self.session.run(None, feeds))}
