"""runtime/backends.py: backend names, providers, session options, the ONNX halves against
the torch model (dynamic batch, focal)."""

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mtl_split_core.export import export_model
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, load_model, save_model
from mtl_split_core.runtime.backends import (
    BACKENDS,
    OnnxExport,
    OrtEdge,
    OrtOptions,
    OrtServer,
    check_backend,
    providers,
    with_model_folder,
)
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.server import ServerRunner


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, card, export folder) of a small untrained model, split s16 exported."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, MultiTaskSplitNet(ModelConfig(
        name="tiny", backbone="mobilenetv3_small", input_size=(64, 48),
        bottlenecks={"s16": 8}, depth_reference_focal=100.0)).eval())
    model, card = load_model(path)
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8) for i in range(2)]
    export_model(model, card, path / "onnx", splits=["s16"], frames=frames)
    return model, card, path / "onnx"


def test_backend_names():
    assert BACKENDS == ("torch", "onnxruntime")
    assert check_backend("onnxruntime") == "onnxruntime"
    with pytest.raises(ConfigError, match="parameter 'backend': unknown backend 'tensorrt'"):
        check_backend("tensorrt")


def test_cpu_gets_only_the_cpu_provider():
    assert providers(torch.device("cpu")) == ["CPUExecutionProvider"]


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="this onnxruntime has a CUDA provider")
def test_cuda_without_a_cuda_provider_is_a_config_error():
    with pytest.raises(ConfigError, match="parameter 'device': .*use device cpu"):
        providers(torch.device("cuda", 0))
    # device auto resolved to CUDA by torch: onnxruntime falls back to its CPU provider.
    assert providers(torch.device("cuda", 0), strict=False) == ["CPUExecutionProvider"]


def test_default_folder_is_the_model_folders_onnx(tmp_path):
    assert with_model_folder(None, tmp_path).folder == str(tmp_path / "onnx")
    explicit = OrtOptions(folder="/x", threads=1)
    assert with_model_folder(explicit, tmp_path) == explicit


def test_bad_session_options_name_the_option(exported):
    _, card, folder = exported
    with pytest.raises(ConfigError, match="onnx_optimization"):
        OnnxExport(card, OrtOptions(str(folder), optimization="max"), torch.device("cpu"))
    with pytest.raises(ConfigError, match="onnx_threads"):
        OnnxExport(card, OrtOptions(str(folder), threads=-1), torch.device("cpu"))
    with pytest.raises(ConfigError, match="parameter 'onnx_dir': backend onnxruntime needs"):
        OnnxExport(card, OrtOptions(), torch.device("cpu"))


def test_idle_threads_do_not_spin_unless_asked(exported):
    _, card, folder = exported
    for spinning, value in ((False, "0"), (True, "1")):
        export = OnnxExport(card, OrtOptions(str(folder), spinning=spinning),
                            torch.device("cpu"))
        assert export._so.get_session_config_entry("session.intra_op.allow_spinning") == value


@pytest.mark.parametrize("optimization", ["disable", "all"])
def test_halves_match_torch_at_any_batch(exported, optimization):
    model, card, folder = exported
    export = OnnxExport(card, OrtOptions(str(folder), threads=1, optimization=optimization),
                        torch.device("cpu"))
    edge, server = OrtEdge(export, "s16"), OrtServer(export, "s16")
    assert server.focal_input and export.precision == "fp32"
    assert export.providers_in_use("s16", "edge") == ["CPUExecutionProvider"]
    for batch in (1, 3):
        x = torch.rand(batch, 3, 48, 64)
        with torch.inference_mode():
            z = model.edge(x, "s16")
            focal = torch.linspace(80, 120, batch)
            ref = model.server(z, "s16", focal=focal)
            ref_no_focal = model.server(z, "s16")
        np.testing.assert_allclose(edge(x.numpy()), z.numpy(), atol=1e-4)
        got = server(z.numpy(), focal.numpy())
        got_no_focal = server(z.numpy(), None)  # the reference camera: depth scale exactly 1
        assert set(got) == set(ref)
        for name in ref:
            np.testing.assert_allclose(got[name].numpy(), ref[name].numpy(), rtol=1e-4,
                                       atol=1e-4)
            np.testing.assert_allclose(got_no_focal[name].numpy(), ref_no_focal[name].numpy(),
                                       rtol=1e-4, atol=1e-4)


def test_torch_backend_results_are_unchanged(exported):
    """backend=torch is the runners' default and computes exactly what it did before."""
    model, card, _ = exported
    rgb = np.random.default_rng(5).integers(0, 256, (60, 80, 3), np.uint8)
    default, explicit = EdgeRunner(model, card, device="cpu"), EdgeRunner(
        model, card, device="cpu", backend="torch")
    a, b = default(rgb), explicit(rgb)
    assert a.tensor.data == b.tensor.data and default._ort is None
    x = torch.from_numpy(rgb)
    from mtl_split_core.preprocess import letterbox_tensor
    with torch.inference_mode():
        z = model.edge(letterbox_tensor(x, (64, 48))[0][None], "s16")[0]
    from mtl_split_core.codec import encode
    assert encode(z, default.codec).data == a.tensor.data
    server = ServerRunner(model, card, device="cpu", backend="torch")
    result = server(a)
    again = dataclasses.replace(result, timings_ms={})
    assert np.array_equal(again.depth, ServerRunner(model, card, device="cpu")(a).depth)


def test_onnxruntime_on_the_server_runner_needs_an_exported_split(exported, tmp_path):
    model, card, folder = exported
    with pytest.raises(ConfigError, match="parameter 'onnx_dir': .*no ONNX export card"):
        ServerRunner(model, card, device="cpu", backend="onnxruntime",
                     onnx=OrtOptions(str(tmp_path)))
    runner = ServerRunner(model, card, device="cpu", backend="onnxruntime",
                          onnx=OrtOptions(str(folder)))
    assert list(runner._ort) == ["s16"] and runner.device.type == "cpu"
