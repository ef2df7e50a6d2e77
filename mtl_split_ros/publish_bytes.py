"""Publish serialized (CDR) messages with the GIL released for the DDS write.

rclpy's ``Publisher.publish(bytes)`` holds the GIL for the whole write (DDS serialisation of
the sample into its transport and the sends): on the H100 fleet run it was ~20% of the server
process's GIL samples, time in which the worker thread could not prepare the next batch. The
write itself is rcl's C function ``rcl_publish_serialized_message``; called through ctypes
(which drops the GIL around a foreign call) the other threads run while it writes.

The rcl library is the one rclpy itself loaded (found in ``/proc/self/maps``, so a pip install
and a system ROS 2 alike), the publisher is rclpy's own ``rcl_publisher_t`` (``handle.pointer``,
held by ``with handle:`` as rclpy's ``publish`` does, so it cannot be destroyed mid-write), and
the message struct is rcutils' ``uint8_array`` (buffer, length, capacity, allocator: stable
across ROS 2 releases). Where any of that is unavailable (no ``/proc``, no symbol) the bytes go
through rclpy's ``publish`` as before: same result, the GIL held.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

RCL_RET_OK = 0


class _Allocator(ctypes.Structure):  # rcutils_allocator_t
    _fields_ = [("allocate", ctypes.c_void_p), ("deallocate", ctypes.c_void_p),
                ("reallocate", ctypes.c_void_p), ("zero_allocate", ctypes.c_void_p),
                ("state", ctypes.c_void_p)]


class _SerializedMessage(ctypes.Structure):  # rcutils_uint8_array_t (rcl_serialized_message_t)
    _fields_ = [("buffer", ctypes.c_void_p), ("buffer_length", ctypes.c_size_t),
                ("buffer_capacity", ctypes.c_size_t), ("allocator", _Allocator)]


class _ErrorString(ctypes.Structure):  # rcutils_error_string_t, returned by value
    _fields_ = [("text", ctypes.c_char * 1024)]


class _Rcl:
    """rcl's publish and rcutils' error reset, from the libraries this process loaded."""

    def __init__(self, rcl: str, rcutils: str | None) -> None:
        lib = ctypes.CDLL(rcl)  # already loaded by rclpy: the same handle, nothing new
        self.publish = lib.rcl_publish_serialized_message
        self.publish.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SerializedMessage),
                                 ctypes.c_void_p]
        self.publish.restype = ctypes.c_int32
        self.error: Any = None
        self.reset_error: Any = None
        if rcutils:
            utils = ctypes.CDLL(rcutils)
            self.error, self.reset_error = utils.rcutils_get_error_string, utils.rcutils_reset_error
            self.error.restype = _ErrorString

    def take_error(self) -> str:
        """rcl's message for the failure just now in this thread, cleared (rcl's contract)."""
        if self.error is None:
            return ""
        text = self.error().text.decode(errors="replace")
        self.reset_error()
        return text


_lock = threading.Lock()
_resolved: list[_Rcl | None] = []  # [] until the first publish looked; [None]: not available


def loaded_library(name: str, maps: Path = Path("/proc/self/maps")) -> str | None:
    """The path of the shared library ``name`` (e.g. ``librcl.so``) mapped into this process,
    or None (not loaded, or no ``/proc``)."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(maxsplit=5)  # address perms offset dev inode [path]
        file = Path(fields[5]).name if len(fields) == 6 else ""
        if file == name or file.startswith(name + "."):
            return fields[5]
    return None


def _rcl() -> _Rcl | None:
    with _lock:
        if not _resolved:  # a publisher exists, so rclpy has loaded librcl
            rcl = loaded_library("librcl.so")
            try:
                _resolved.append(_Rcl(rcl, loaded_library("librcutils.so")) if rcl else None)
            except (OSError, AttributeError):  # a library or symbol that is not there
                _resolved.append(None)
        return _resolved[0]


def gil_free() -> bool:
    """Whether ``publish`` writes with the GIL released in this process."""
    return _rcl() is not None


def publish(publisher: Any, message: Any) -> None:
    """``publisher.publish(message)``; CDR ``bytes`` are written with the GIL released."""
    rcl = _rcl() if isinstance(message, bytes) else None
    if rcl is None:
        publisher.publish(message)
        return
    sample = _SerializedMessage(ctypes.cast(ctypes.c_char_p(message), ctypes.c_void_p),
                                len(message), len(message), _Allocator())
    with publisher.handle:
        ret = rcl.publish(publisher.handle.pointer, ctypes.byref(sample), None)
    if ret != RCL_RET_OK:
        raise RuntimeError(f"rcl_publish_serialized_message failed ({ret}) on "
                           f"{publisher.topic_name}: {rcl.take_error()}")
