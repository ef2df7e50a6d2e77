"""ONNX export (mtl_split_core/export.py and `mtl-split export`): round trip through the runners,
the export card, int8, rejected files, nothing half-written."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from mtl_split_core import export as export_module
from mtl_split_core.cli.main import main
from mtl_split_core.codec import decode
from mtl_split_core.export import EXPORT_CARD, ExportError, export_model, sha256_file
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, load_model, save_model
from mtl_split_core.runtime.backends import OnnxFileError, OrtOptions
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import ServerRunner


def _frames(n, size=(160, 120), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size[1], size[0], 3), np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model folder, fp32 export folder inside it) of a small untrained model, with a server
    half of its own at s8 (backbone stages, neck and heads: the runner tests then cover both
    kinds of split)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, MultiTaskSplitNet(ModelConfig(
        name="tiny", backbone="mobilenetv3_small", input_size=(128, 96),
        bottlenecks={"s16": 8}, depth_reference_focal=100.0, per_split_heads=("s8",),
        per_split_server=("s8",))).eval())
    model, card = load_model(path)
    export_model(model, card, path / "onnx", splits=["s8", "s16"], frames=_frames(4))
    return path


def _copy(tiny, tmp_path):
    shutil.copytree(tiny, tmp_path / "m")
    return tmp_path / "m"


def test_the_card_ties_the_files_to_the_model(tiny):
    card = json.loads((tiny / "onnx" / EXPORT_CARD).read_text())
    model_card = json.loads((tiny / "card.json").read_text())
    assert card["model_fingerprint"] == model_card["fingerprint"]
    assert card["input_size"] == [128, 96] and card["precision"] == "fp32"
    assert card["opset"] == 17 and card["focal_input"] is True
    assert set(card["splits"]) == {"s8", "s16"}
    for entry in card["splits"].values():
        assert {"heatmap", "segmentation", "depth"} <= set(entry["outputs"])
        for half in ("edge", "server"):
            path = tiny / "onnx" / entry[half]["file"]
            assert sha256_file(path) == entry[half]["sha256"]
            onnx.checker.check_model(str(path))
            assert entry[half]["max_abs_diff"] <= entry[half]["tolerance"]


def test_runners_on_onnxruntime_match_torch(tiny):
    frames = _frames(3, seed=1)
    # A server serves every exported split: one per backend for both splits. The edges run
    # the servers' loaded model (the folder's onnx/, as from_path gives them): one load each.
    servers = [ServerRunner.from_path(str(tiny), device="cpu", backend=b,
                                      score_threshold=0.0, max_detections=20)
               for b in ("torch", "onnxruntime")]
    onnx_options = [None, OrtOptions(str(tiny / "onnx"))]
    for split in ("s8", "s16"):
        edges = [EdgeRunner(server.model, server.card, device="cpu", split=split,
                            backend=server.backend, codec="q8-zstd/1", onnx=options)
                 for server, options in zip(servers, onnx_options)]
        for rgb in frames:
            packets = [edge(rgb) for edge in edges]
            np.testing.assert_allclose(packets[1].tensor.scale, packets[0].tensor.scale,
                                       rtol=1e-4, atol=1e-5)
            codes = [np.rint((decode(p.tensor) - np.reshape(p.tensor.offset, (-1, 1, 1)))
                             / np.reshape(p.tensor.scale, (-1, 1, 1))) for p in packets]
            # The same codes but where a value sits on a rounding boundary: one step, rarely.
            assert np.abs(codes[0] - codes[1]).max() <= 1
            assert np.mean(codes[0] != codes[1]) < 0.01
            for focal in (None, 150.0):
                ref, got = (server(packets[0], focal_px=focal) for server in servers)
                np.testing.assert_allclose(got.depth, ref.depth, rtol=1e-4)
                assert np.mean(got.segmentation != ref.segmentation) < 1e-3
                np.testing.assert_allclose(got.scores, ref.scores, atol=1e-4)
                _assert_same_detections(got, ref)


def _assert_same_detections(got, ref, score_tol=1e-4, box_tol=1e-2):
    """Each reference box has a match among the boxes of (nearly) the same score: the untrained
    model gives many tied scores, which torch and onnxruntime may order either way."""
    for score, box in zip(ref.scores, ref.boxes):
        same_score = np.abs(got.scores - score) <= score_tol
        close = np.abs(got.boxes - box).max(axis=1) <= box_tol
        assert (same_score & close).any(), (score, box)


def test_edge_follows_a_split_change_and_rejects_an_unexported_split(tiny):
    edge = EdgeRunner.from_path(str(tiny), device="cpu", split="s16", backend="onnxruntime")
    edge.configure(split="s8")
    assert tuple(edge(_frames(1)[0]).tensor.shape) == (24, 12, 16)
    with pytest.raises(OnnxFileError, match="split s4 was not exported"):
        edge.configure(split="s4")
    assert edge.split == "s8"  # unchanged after the failed change


def test_int8_edge_is_quantized_and_close(tiny, tmp_path):
    model, card = load_model(tiny)
    frames = _frames(8, seed=2)
    out = export_model(model, card, tmp_path / "int8", splits=["s16"], precision="int8",
                       frames=frames)
    edge_entry = out["splits"]["s16"]["edge"]
    assert edge_entry["rel_rms_error"] <= edge_entry["tolerance"] == 0.75
    assert edge_entry["precision"] == "int8" and out["splits"]["s16"]["server"]["precision"] \
        == "fp32"
    graph = onnx.load(str(tmp_path / "int8" / edge_entry["file"])).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 5
    edge = EdgeRunner(model, card, device="cpu", backend="onnxruntime",
                      onnx=OrtOptions(str(tmp_path / "int8")))
    ref = EdgeRunner(model, card, device="cpu")
    a, b = ref(frames[0]).tensor, edge(frames[0]).tensor
    assert a.shape == b.shape
    # Per-channel ranges of the int8 prefix's output stay near fp32's.
    span_ref = np.asarray(a.scale)
    assert np.median(np.abs(np.asarray(b.scale) - span_ref) / (span_ref + 1e-6)) < 0.3


@pytest.mark.parametrize("damage, words", [
    ("fingerprint", ["exported from model fingerprint", "expected"]),
    ("input_size", ["input size [64, 48]"]),
    ("bytes", ["edge_s16.onnx", "changed since export"]),
    ("missing", ["edge_s16.onnx", "missing"]),
    ("garbage", ["edge_s16.onnx", "onnxruntime cannot load it"]),
    ("no_card", ["no ONNX export card"]),
])
def test_a_bad_export_is_rejected_in_one_line(tiny, tmp_path, damage, words):
    model_dir = _copy(tiny, tmp_path)
    folder = model_dir / "onnx"
    card = json.loads((folder / EXPORT_CARD).read_text())
    expected = json.loads((model_dir / "card.json").read_text())["fingerprint"]
    edge_path = folder / "edge_s16.onnx"
    if damage == "fingerprint":
        card["model_fingerprint"] = "0123456789abcdef"
    elif damage == "input_size":
        card["input_size"] = [64, 48]
    elif damage == "bytes":
        edge_path.write_bytes(edge_path.read_bytes()[:-100])
    elif damage == "missing":
        edge_path.unlink()
    elif damage == "garbage":  # a corrupt file the card vouches for: onnxruntime refuses it
        edge_path.write_bytes(b"not an onnx model")
        card["splits"]["s16"]["edge"]["sha256"] = sha256_file(edge_path)
    elif damage == "no_card":
        (folder / EXPORT_CARD).unlink()
    if damage != "no_card":
        (folder / EXPORT_CARD).write_text(json.dumps(card))
    with pytest.raises(OnnxFileError) as err:
        EdgeRunner.from_path(str(model_dir), device="cpu", backend="onnxruntime")
    message = str(err.value)
    assert "\n" not in message and expected in message and str(folder) in message
    assert message.startswith("parameter 'onnx_dir': ")
    for word in words:
        assert word in message


def test_server_rejects_packets_of_unexported_splits(tiny):
    from mtl_split_core.runtime.packet import PacketRejected
    server = ServerRunner.from_path(str(tiny), device="cpu", backend="onnxruntime")
    packet = EdgeRunner.from_path(str(tiny), device="cpu", split="s4")(_frames(1)[0])
    with pytest.raises(PacketRejected, match="split s4 is not in this server's ONNX export"):
        server(packet)


def test_a_failed_export_leaves_nothing_behind(tiny, tmp_path, monkeypatch):
    model, card = load_model(tiny)
    out = tmp_path / "out"

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(export_module, "_check_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model(model, card, out, splits=["s16"], frames=_frames(2))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_check_is_an_export_error(tiny, tmp_path, monkeypatch):
    model, card = load_model(tiny)
    monkeypatch.setattr(export_module, "FP32_TOLERANCE", -1.0)  # nothing can pass
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export_model(model, card, tmp_path / "out", splits=["s16"], frames=_frames(2))
    monkeypatch.setattr(export_module, "INT8_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="int8 output is off PyTorch's"):
        export_model(model, card, tmp_path / "out", splits=["s16"], precision="int8",
                     frames=_frames(8))
    assert list(tmp_path.iterdir()) == []


def test_export_replaces_a_previous_export_but_not_other_folders(tiny, tmp_path):
    model, card = load_model(tiny)
    out = tmp_path / "out"
    shutil.copytree(tiny / "onnx", out)  # a previous export (s8, s16) of this model
    assert (out / "edge_s16.onnx").exists()
    export_model(model, card, out, splits=["s32"], frames=_frames(2))
    assert set(json.loads((out / EXPORT_CARD).read_text())["splits"]) == {"s32"}
    assert not (out / "edge_s16.onnx").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an ONNX export"):
        export_model(model, card, other, splits=["s16"], frames=_frames(2))
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_cli_exports_and_reports(tiny, tmp_path, capsys):
    frames = tmp_path / "frames.npz"
    import cv2
    jpegs = [cv2.imencode(".jpg", f)[1].ravel() for f in _frames(3, seed=3)]
    np.savez(frames, jpeg=np.concatenate(jpegs),
             offsets=np.cumsum([0] + [len(j) for j in jpegs]))
    out = tmp_path / "onnx"
    assert main(["export", "--model", str(tiny), "--split", "s16", "--frames", str(frames),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "edge_s16.onnx (fp32): max |onnx - torch|" in printed and "server_s16.onnx" in printed
    assert json.loads((out / EXPORT_CARD).read_text())["check_frames"] == 3


@pytest.mark.parametrize("argv, words", [
    (["--split", "s99"], "split 's99': this model splits at s4, s8, s16, s32 (or all)"),
    (["--precision", "int8", "--count", "2"], "needs >= 8 frames"),
    (["--frames", "/nonexistent/frames"], "expected a dataset folder"),
])
def test_cli_bad_arguments_one_line_exit_2(tiny, tmp_path, capsys, argv, words):
    out = tmp_path / "out"
    frames = [] if "--frames" in argv else ["--frames", _npz(tmp_path)]
    assert main(["export", "--model", str(tiny), *argv, *frames, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
    assert not out.exists()


def _npz(tmp_path):
    import cv2
    jpegs = [cv2.imencode(".jpg", f)[1].ravel() for f in _frames(3, seed=4)]
    path = tmp_path / "f.npz"
    np.savez(path, jpeg=np.concatenate(jpegs), offsets=np.cumsum([0] + [len(j) for j in jpegs]))
    return str(path)


def test_cli_rejects_a_bad_precision_and_size(tiny, tmp_path, capsys):
    for argv in (["--precision", "fp64"], ["--input", "0x1"]):
        with pytest.raises(SystemExit) as err:
            main(["export", "--model", str(tiny), *argv, "--out", str(tmp_path / "o")])
        assert err.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1
