"""Message factories: build a ROS message by type name, for rclpy or for rosbags.

Code that makes messages (``outputs.py``) calls ``factory.make("sensor_msgs/msg/Image",
header=..., data=np_uint8_array, ...)`` and never imports a message package, so the same code
feeds a live publisher (``RclpyMessages``) and a bag writer without rclpy (``BagMessages``
over ``mtl_split_core.bags.typestore()``). Fields not given keep their message defaults.
Numeric arrays are passed as numpy arrays; each factory turns them into its own field type.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mtl_split_ros.image_msg import to_uint8_array

if TYPE_CHECKING:  # rosbags is imported only when a bag is written
    from rosbags.interfaces import Nodetype
    from rosbags.typesys.store import Typestore


class MessageFactory(Protocol):
    def make(self, msgtype: str, **fields: Any) -> Any:
        """A message of ``msgtype`` ("pkg/msg/Name") with ``fields`` set, the rest default."""


class RclpyMessages:
    """rclpy message classes (rosidl); for nodes."""

    def __init__(self) -> None:
        self.message_class = lru_cache(maxsize=None)(_rclpy_message_class)

    def make(self, msgtype: str, **fields: Any) -> Any:
        msg = self.message_class(msgtype)()
        for name, value in fields.items():
            if isinstance(value, np.ndarray):
                # uint8[] as array.array: rclpy checks a list element by element (slow).
                value = to_uint8_array(value) if value.dtype == np.uint8 else value.tolist()
            setattr(msg, name, value)
        return msg


def _rclpy_message_class(msgtype: str) -> type:
    """The generated Python class of "pkg/msg/Name" (what rosidl_runtime_py's get_message
    does; that package is not among the PyPI wheels)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


# Interface packages the outputs use that rosbags' built-in Kilted store lacks: their .msg
# files are read from the installed package (an ament prefix: a system ROS 2, or the ros2 CLI
# kit `make setup` builds).
EXTRA_INTERFACES = ("vision_msgs",)


class BagMessages:
    """Dataclasses of a rosbags type store (``mtl_split_core.bags.typestore()``); for bags.

    rosbags classes have no defaults, so every field not given is filled from the store's
    field definitions: 0, "", False, zero-filled fixed arrays, empty sequences. The store gets
    ``EXTRA_INTERFACES`` registered (so a bag writer on it can serialize them too).
    """

    def __init__(self, store: Typestore) -> None:
        from rosbags.interfaces import Nodetype
        self.store = store
        self._nodetype = Nodetype
        for package in EXTRA_INTERFACES:
            register_interfaces(store, package)

    def make(self, msgtype: str, **fields: Any) -> Any:
        _, defs = self.store.fielddefs[msgtype]
        values = {name: fields[name] if name in fields else self._default(node)
                  for name, node in defs}
        unknown = set(fields) - set(values)
        if unknown:
            raise AttributeError(f"{msgtype} has no field(s) {sorted(unknown)}")
        return self.store.types[msgtype](**values)

    def _default(self, node: tuple[Nodetype, Any]) -> Any:
        # A rosbags field description (kind, detail): the detail's type depends on the kind,
        # which mypy cannot narrow from ``kind == ...``, hence Any.
        kind, detail = node
        nt = self._nodetype
        if kind == nt.BASE:
            base = detail[0]
            if base in ("string", "wstring"):
                return ""
            if base == "bool":
                return False
            return 0.0 if base.startswith("float") else 0
        if kind == nt.NAME:
            return self.make(detail)
        sub, count = detail
        length = count if kind == nt.ARRAY else 0
        if sub[0] == nt.BASE and sub[1][0] not in ("string", "wstring"):
            return np.zeros(length, _numpy_dtype(sub[1][0]))
        return [self._default(sub) for _ in range(length)]


def _numpy_dtype(base: str) -> np.dtype:
    return np.dtype({"byte": "uint8", "char": "uint8", "octet": "uint8"}.get(base, base))


def register_interfaces(store: Typestore, package: str) -> None:
    """Register ``package``'s messages (``<ament prefix>/share/<package>/msg/*.msg``) with a
    rosbags type store, unless it has them; BagError (one line) when none is installed."""
    from rosbags.typesys import get_types_from_msg

    from mtl_split_core.bags import BagError

    if any(name.startswith(f"{package}/msg/") for name in store.fielddefs):
        return
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in prefixes:
        folder = Path(prefix) / "share" / package / "msg"
        files = sorted(folder.glob("*.msg"))
        if files:
            types: dict = {}
            for f in files:
                types.update(get_types_from_msg(f.read_text(), f"{package}/msg/{f.stem}"))
            store.register(types)
            return
    raise BagError(f"the {package} message definitions are not installed (looked in "
                   f"share/{package}/msg of AMENT_PREFIX_PATH: {prefixes or 'empty'}); source "
                   f"a ROS 2 with ros-$ROS_DISTRO-{package.replace('_', '-')}, or `make setup`'s "
                   f"build/ros2_cli_kit/install/setup.bash")
