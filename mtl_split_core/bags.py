"""rosbag2 files without a ROS installation (the ``rosbags`` library): read MCAP and sqlite3
bags of any metadata version Humble..Kilted, and write MCAP bags with our message definitions
embedded so other tools can decode them. ROS-free: no rclpy.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from mtl_split_core.errors import InputError
from mtl_split_core.locations import data_dirs

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
OUR_MESSAGES = ("Detection2D", "Detection2DArray", "SplitFeatures")


class BagError(InputError):
    """A bag that cannot be read or written; the message names the file and what failed."""


def msg_definition_dirs() -> list[Path]:
    """Where our .msg files are: the source tree, or <prefix>/share/mtl_split/msg."""
    return data_dirs("mtl_split_msgs/msg", "msg")


def typestore() -> Typestore:
    """The Kilted type store plus mtl_split/msg/* (for reading and writing our outputs)."""
    store = get_typestore(Stores.ROS2_KILTED)
    for d in msg_definition_dirs():
        if all((d / f"{m}.msg").exists() for m in OUR_MESSAGES):
            types = {}
            for m in OUR_MESSAGES:
                types.update(get_types_from_msg((d / f"{m}.msg").read_text(),
                                                f"mtl_split/msg/{m}"))
            store.register(types)
            return store
    raise BagError(f"mtl_split message definitions not found in {msg_definition_dirs()}")


@contextmanager
def open_bag(path: str | Path) -> Iterator[AnyReader]:
    """An opened reader for a rosbag2 folder or file (MCAP or sqlite3)."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except BagError:
        raise
    except Exception as err:  # noqa: BLE001 - rosbags raises several types for one cause
        raise BagError(f"{path}: cannot open bag: {type(err).__name__}: {err}") from err
    try:
        yield reader
    finally:
        reader.close()


def messages(reader: AnyReader, path: str | Path, topics: Collection[str] | None = None
             ) -> Iterator[tuple[Connection, int, bytes]]:
    """(connection, timestamp_ns, raw CDR bytes) in time order; read errors become BagError."""
    conns = [c for c in reader.connections if topics is None or c.topic in topics]
    try:
        yield from reader.messages(connections=conns)
    except Exception as err:  # noqa: BLE001
        raise BagError(f"{path}: reading messages failed (truncated or corrupt bag?): "
                       f"{type(err).__name__}: {err}") from err


class BagWriter:
    """An MCAP rosbag2 writer that takes message objects of the ``typestore()`` types."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: already exists; choose a new output path")
        self.store = typestore()
        self.writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.connections: dict[str, Connection] = {}

    def __enter__(self) -> BagWriter:
        self.writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()

    def write(self, topic: str, msgtype: str, timestamp_ns: int, msg: object) -> None:
        self.write_raw(topic, msgtype, timestamp_ns, self.store.serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, timestamp_ns: int,
                  data: bytes | memoryview) -> None:
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype,
                                                                 typestore=self.store)
        self.writer.write(self.connections[topic], timestamp_ns, data)
