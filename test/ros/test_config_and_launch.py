"""config/*.yaml only sets declared parameters with compatible types; launch files name things
that exist in the installed package."""

import ast
import importlib
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = {"edge.yaml": "mtl_split_edge.node", "server.yaml": "mtl_split_server.node",
                "sim_camera.yaml": "mtl_split_tools.sim_camera_node"}
INSTALL = Path(os.environ.get("COLCON_PREFIX_PATH", ROOT / "install").split(":")[0]) / "mtl_split"


def _yaml_params(name):
    doc = yaml.safe_load((ROOT / "config" / name).read_text())
    assert list(doc) == ["/**"], "parameter files use the /** wildcard so namespaces work"
    return doc["/**"]["ros__parameters"]


@pytest.mark.parametrize("config_name", sorted(NODE_MODULES))
def test_every_config_parameter_is_declared_with_its_type(config_name):
    declared = {p.name: p for p in importlib.import_module(NODE_MODULES[config_name]).PARAMS}
    for key, value in _yaml_params(config_name).items():
        assert key in declared, f"{config_name}: {key} is not declared by the node"
        default = declared[key].default
        assert type(value) is type(default) or (isinstance(default, float) and
                                                 isinstance(value, int)), \
            f"{config_name}: {key}={value!r} has another type than the default {default!r}"
        if declared[key].choices is not None:
            assert value in declared[key].choices, f"{config_name}: {key}={value!r} not accepted"
        if isinstance(value, list) and value:
            assert type(value[0]) is type(default[0])


def _launch_calls(path):
    """(executable names, config file names) a launch file refers to."""
    tree = ast.parse(path.read_text())
    executables, files = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "executable" and \
                isinstance(node.value, ast.Constant):
            executables.add(node.value.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                node.value.endswith((".yaml", ".rviz", ".launch.py")):
            files.add(node.value)
    return executables, files


@pytest.mark.parametrize("launch_file", sorted(p.name for p in (ROOT / "launch").glob("*.py")))
def test_launch_files_name_installed_things(launch_file):
    executables, files = _launch_calls(ROOT / "launch" / launch_file)
    share = INSTALL / "share" / "mtl_split"
    for exe in executables - {"rviz2"}:
        path = INSTALL / "lib" / "mtl_split" / exe
        assert path.exists() and os.access(path, os.X_OK), f"{launch_file}: {exe} not installed"
    for name in files:
        hits = list(share.rglob(name))
        assert hits, f"{launch_file}: {name} not installed under {share}"
    assert (share / "launch" / launch_file).exists()


@pytest.mark.parametrize("launch_file,module", [("edge.launch.py", "mtl_split_edge.node"),
                                                ("server.launch.py", "mtl_split_server.node")])
def test_launch_parameter_arguments_are_declared_parameters(launch_file, module):
    """Each launch argument that overrides a parameter names one the node declares."""
    tree = ast.parse((ROOT / "launch" / launch_file).read_text())
    parameters = next(ast.literal_eval(node.value) for node in tree.body
                      if isinstance(node, ast.Assign) and
                      [getattr(t, "id", None) for t in node.targets] == ["PARAMETERS"])
    declared = {p.name for p in importlib.import_module(module).PARAMS} | {"use_sim_time"}
    assert set(parameters) <= declared, set(parameters) - declared
