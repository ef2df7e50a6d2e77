"""The core library imports and works on a machine without ROS (rclpy absent)."""

import pkgutil
import subprocess
import sys

import mtl_split_core

# Make every ROS import fail, then import every module of the core.
BLOCK_ROS_AND_IMPORT_ALL = """
import importlib, importlib.abc, pkgutil, sys

class BlockRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        root = name.split('.')[0]
        if root in {'rclpy', 'rosidl_runtime_py', 'std_msgs', 'sensor_msgs', 'mtl_split'}:
            raise ImportError(f'ROS module {name} imported by the ROS-free core')
        return None

sys.meta_path.insert(0, BlockRos())
import mtl_split_core
names = [m.name for m in pkgutil.walk_packages(mtl_split_core.__path__, 'mtl_split_core.')]
for name in names:
    importlib.import_module(name)
print('IMPORTED', len(names))
"""


def test_core_imports_without_ros():
    result = subprocess.run([sys.executable, "-c", BLOCK_ROS_AND_IMPORT_ALL],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    count = int(result.stdout.split("IMPORTED")[1])
    expected = len(list(pkgutil.walk_packages(mtl_split_core.__path__, 'mtl_split_core.')))
    assert count == expected and count > 0
