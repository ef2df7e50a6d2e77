"""ONNX export of a model's two halves, and the export card that ties them to the model.

For each split: ``edge_<split>.onnx`` (normalisation, backbone prefix, bottleneck encoder; the
codec's quantisation stays in numpy) and ``server_<split>.onnx`` (bottleneck decoder, rest of
the backbone, neck, heads; dynamic batch; a ``focal`` input when the card has a depth
reference focal). ``export.json`` beside them records the model fingerprint, input size,
precision, opset, each file's sha256 and the check against PyTorch done at export time. int8
quantises the edge (onnxruntime static quantisation, QDQ, calibrated on frames); the server
stays fp32. The runtime side (sessions) is ``runtime/backends.py``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtl_split_core.errors import InputError
from mtl_split_core.model.network import MultiTaskSplitNet
from mtl_split_core.output_folder import replacing_folder
from mtl_split_core.preprocess import letterbox_tensor

EXPORT_CARD = "export.json"
EXPORT_VERSION = 1
OPSET = 17
EXPORT_PRECISIONS = ("fp32", "int8")
# Export-time checks against PyTorch. fp32: max |onnx - torch| relative to the largest output
# magnitude (float reassociation only). int8 edge: RMS error relative to the output's standard
# deviation, a sanity bound that a broken quantisation (~1.0-1.4) fails: the default model's
# fp32 prefix itself moves by ~12% RMS for half a grey level of input noise (measured), so the
# real measure of int8 is accuracy through the whole split path (bench/export_bench.py).
FP32_TOLERANCE = 1e-4
INT8_TOLERANCE = 0.75
CHECK_FRAMES = 4
EDGE_INPUT, EDGE_OUTPUT = "image", "features"
SERVER_INPUT, FOCAL_INPUT = "features", "focal"


class ExportError(InputError):
    """An export that cannot be made or does not match PyTorch (the message says which)."""


def edge_file(split: str, precision: str) -> str:
    return f"edge_{split}.onnx" if precision == "fp32" else f"edge_{split}_{precision}.onnx"


def server_file(split: str) -> str:
    return f"server_{split}.onnx"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _EdgeGraph(nn.Module):
    """``model.edge`` for one split as a module with one tensor in and out (what ONNX traces)."""

    def __init__(self, model: MultiTaskSplitNet, split: str) -> None:
        super().__init__()
        self.model, self.split = model, split

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.edge(image, self.split)


class _ServerGraph(nn.Module):
    """``model.server`` for one split with its outputs as a tuple in ``names`` order."""

    def __init__(self, model: MultiTaskSplitNet, split: str, out_hw: tuple[int, int],
                 names: Sequence[str], focal: bool) -> None:
        super().__init__()
        self.model, self.split, self.out_hw = model, split, out_hw
        self.names, self.focal = list(names), focal

    def forward(self, z: torch.Tensor, focal: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, ...]:
        out = self.model.server(z, self.split, out_hw=self.out_hw,
                                focal=focal if self.focal else None)
        return tuple(out[name] for name in self.names)


def frames_to_batch(frames: Sequence[np.ndarray], input_size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 (H, W, 3) frames -> float32 (N, 3, H, W) in [0, 1], letterboxed as the edge
    runner does."""
    return np.stack([letterbox_tensor(torch.from_numpy(np.ascontiguousarray(f)),
                                      input_size)[0].numpy() for f in frames])


def _trace(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path,
           inputs: list[str], outputs: list[str], dynamic: dict[str, dict[int, str]],
           opset: int) -> None:
    # The exporter restores the training flag of the module it was given; an eval() wrapper
    # keeps the model in eval mode afterwards (a fresh wrapper would put BatchNorm in training).
    module.eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Tracer and deprecation warnings of the legacy exporter: the check below is the test.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False,
                          do_constant_folding=True)


def _session(path: Path) -> Any:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check_model(path: Path) -> None:
    import onnx
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"{path.name} fails onnx.checker: {str(err).splitlines()[0]}") from None


def _quantize_edge(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """onnxruntime static quantisation (QDQ, per-channel int8 weights, uint8 activations)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.frames = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            frame = next(self.frames, None)
            return None if frame is None else {EDGE_INPUT: frame[None]}

    prepared = dst.with_suffix(".pre.onnx")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quant_pre_process(str(src), str(prepared))
        quantize_static(str(prepared), str(dst), Frames(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    prepared.unlink()


def _export_split(model: MultiTaskSplitNet, split: str, folder: Path, precision: str,
                  input_size: tuple[int, int], samples: np.ndarray, calibration: np.ndarray,
                  focal: float | None, opset: int) -> dict[str, Any]:
    """Export, check and describe one split's two files (written into ``folder``)."""
    w, h = input_size
    x = torch.from_numpy(samples)
    with torch.inference_mode():
        z = model.edge(x, split)
        focals = None if focal is None else torch.full((len(x),), focal) * torch.linspace(
            0.8, 1.2, len(x))
        out = model.server(z, split, out_hw=(h, w), focal=focals)
    names = list(out)
    z, expected_out = z.clone(), [out[n].numpy() for n in names]

    fp32_edge = folder / edge_file(split, "fp32")
    _trace(_EdgeGraph(model, split), (x[:1],), fp32_edge, [EDGE_INPUT], [EDGE_OUTPUT],
           {EDGE_INPUT: {0: "batch"}, EDGE_OUTPUT: {0: "batch"}}, opset)
    server_path = folder / server_file(split)
    inputs = [SERVER_INPUT] + ([FOCAL_INPUT] if focal is not None else [])
    args = (z[:1],) + ((focals[:1],) if focals is not None else ())
    dynamic = {name: {0: "batch"} for name in inputs + names}
    _trace(_ServerGraph(model, split, (h, w), names, focal is not None), args, server_path,
           inputs, names, dynamic, opset)

    edge_path = fp32_edge
    if precision == "int8":
        edge_path = folder / edge_file(split, "int8")
        _quantize_edge(fp32_edge, edge_path, calibration)
        fp32_edge.unlink()
    entry: dict[str, Any] = {}
    for half, path in (("edge", edge_path), ("server", server_path)):
        _check_model(path)
        session = _session(path)
        if half == "edge":
            feeds, expected = {EDGE_INPUT: samples}, [z.numpy()]
        else:
            feeds = {SERVER_INPUT: z.numpy()}
            if focals is not None:
                feeds[FOCAL_INPUT] = focals.numpy()
            expected = expected_out
        got = session.run(None, feeds)
        diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
        info: dict[str, Any] = {"file": path.name, "sha256": sha256_file(path),
                                "precision": "fp32", "max_abs_diff": diff}
        if half == "edge" and precision == "int8":
            ref = expected[0]
            rel_rms = float(np.sqrt(np.mean((got[0] - ref) ** 2) / max(float(ref.var()), 1e-12)))
            info.update(precision="int8", rel_rms_error=rel_rms, tolerance=INT8_TOLERANCE)
            if not rel_rms <= INT8_TOLERANCE:  # also catches NaN
                raise ExportError(f"{path.name}: int8 output is off PyTorch's by {rel_rms:.2f} "
                                  f"of its RMS on {len(samples)} sample frames (> "
                                  f"{INT8_TOLERANCE}); the quantisation failed")
        else:
            scale = max(1.0, *(float(np.abs(e).max()) for e in expected))
            info["tolerance"] = FP32_TOLERANCE * scale
            if not diff <= info["tolerance"]:  # also catches NaN
                raise ExportError(f"{path.name} does not match PyTorch on {len(samples)} "
                                  f"sample frames: max |diff| {diff:.3g} > "
                                  f"{info['tolerance']:.3g}")
        entry[half] = info
    entry["outputs"] = names
    return entry


def export_model(model: MultiTaskSplitNet, card: dict[str, Any], out: str | Path,
                 splits: Sequence[str] | None = None, precision: str = "fp32",
                 input_size: tuple[int, int] | None = None,
                 frames: Sequence[np.ndarray] = (), opset: int = OPSET,
                 progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Export ``splits`` (None = every split) of ``model`` into the folder ``out``; returns the
    export card (also written as ``out/export.json``).

    ``frames``: RGB uint8 frames, checked against PyTorch (the first few) and, for int8,
    the calibration set. The folder appears complete or not at all: files are written into a
    temporary folder beside it and moved into place at the end; a previous export there is
    replaced. Raises ExportError (an InputError) for unusable arguments or a failed check.
    """
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(f"precision {precision!r}: expected one of "
                          f"{', '.join(EXPORT_PRECISIONS)}")
    names = list(model.split_names)
    splits = names if splits is None else list(splits)
    unknown = [s for s in splits if s not in names]
    if unknown or not splits:
        raise ExportError(f"split {unknown or splits}: this model splits at {', '.join(names)}")
    size = tuple(input_size or card["input_size"])
    if len(frames) == 0:
        raise ExportError("no sample frames: the export is checked against PyTorch on frames")
    if precision == "int8" and len(frames) < 8:
        raise ExportError(f"int8 calibration needs >= 8 frames, got {len(frames)}")
    out = Path(out)
    _check_target(out)
    batch = frames_to_batch(frames, (int(size[0]), int(size[1])))
    samples = batch[:CHECK_FRAMES]
    focal = model.config.depth_reference_focal if "depth" in model.config.tasks else None
    model = model.cpu().eval()
    with replacing_folder(out) as folder:
        entries = {}
        for split in splits:
            progress(f"exporting split {split} ({precision})")
            entries[split] = _export_split(model, split, folder, precision,
                                           (int(size[0]), int(size[1])), samples, batch,
                                           focal, opset)
        import onnxruntime
        export = {
            "export_version": EXPORT_VERSION, "format": "onnx",
            "model_name": card.get("name", ""), "model_fingerprint": card["fingerprint"],
            "input_size": [int(size[0]), int(size[1])], "precision": precision,
            "opset": opset, "focal_input": focal is not None,
            "reference_focal": focal, "splits": entries,
            "check_frames": len(samples), "calibration_frames":
                len(batch) if precision == "int8" else 0,
            "torch_version": torch.__version__, "onnxruntime_version": onnxruntime.__version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"),
        }
        (folder / EXPORT_CARD).write_text(json.dumps(export, indent=2) + "\n")
    return export


def _check_target(out: Path) -> None:
    """``out`` must be new, empty, or a previous export (which is replaced)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_CARD).exists():
        raise ExportError(f"{out}: a non-empty folder that is not an ONNX export; "
                          f"choose a new or empty folder")


def read_export_card(folder: str | Path) -> dict[str, Any]:
    """The export card of ``folder``; ExportError naming the file when missing or unreadable."""
    path = Path(folder) / EXPORT_CARD
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: no ONNX export card (run `mtl-split export`)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ExportError(f"{path}: unreadable export card ({err})") from None
    if not isinstance(card, dict) or card.get("export_version") != EXPORT_VERSION:
        version = card.get("export_version") if isinstance(card, dict) else None
        raise ExportError(f"{path}: export_version {version!r}; this build reads "
                          f"{EXPORT_VERSION}")
    return card


def sample_frames(source: str | None, count: int, size: tuple[int, int] = (320, 240),
                  seed: int = 7) -> list[np.ndarray]:
    """Up to ``count`` RGB uint8 frames for checking and calibration: from a dataset folder
    (gen-data output or shards), an .npz of JPEGs (``jpeg`` bytes + ``offsets``, as
    bench/frames.npz), or rendered by the simulator (``source`` None) at ``size`` (W, H)."""
    if source is None:
        from mtl_split_core.sim.scene import SimScene
        with SimScene(seed, size[0], size[1]) as scene:
            return [scene.render().rgb for _ in range(count)]
    path = Path(source)
    if path.is_file() and path.suffix == ".npz":
        import cv2
        try:
            z = np.load(path)
            jpeg, offsets = z["jpeg"], z["offsets"]
        except (OSError, ValueError, KeyError) as err:
            raise ExportError(f"{path}: expected an .npz with 'jpeg' and 'offsets' ({err})"
                              ) from None
        frames = []
        for a, b in list(zip(offsets[:-1], offsets[1:]))[:count]:
            frame = cv2.imdecode(jpeg[a:b], cv2.IMREAD_COLOR)
            if frame is None:
                raise ExportError(f"{path}: frame at byte {a} is not a decodable JPEG")
            frames.append(np.ascontiguousarray(frame[..., ::-1]))
        return frames
    if path.is_dir():
        from mtl_split_core.data.dataset import load_dataset
        try:
            data = load_dataset(path, ("train", "val", "test"))
        except FileNotFoundError as err:
            raise ExportError(f"{path}: {err}") from None
        return list(data["images"][:count])
    raise ExportError(f"{path}: expected a dataset folder or an .npz of JPEG frames")
