"""Numeric arrays from MATLAB ``.mat`` files: v7.3 (HDF5, via h5py) and v5 (parsed here).

NYUv2's ``splits.mat`` is a small v5 file; we read it without SciPy. Only what such files hold
is supported: named real numeric matrices, optionally zlib-compressed (MATLAB's default).
Arrays come back in MATLAB's shape (column-major order honoured), as float64.
Format: MathWorks, "MAT-File Format" (matfile_format.pdf), level 5.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from mtl_split_core.data.sources.base import SourceError

HEADER_BYTES = 128
MI_MATRIX, MI_COMPRESSED = 14, 15
MI_INT8, MI_INT32, MI_UINT32 = 1, 5, 6
# Element data type -> numpy type (little-endian; byte-swapped for big-endian files).
NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8",
           13: "u8"}
COMPLEX_FLAG = 0x0800  # in the array flags word
NUMERIC_CLASSES = range(6, 16)  # mxDOUBLE_CLASS .. mxUINT64_CLASS


def read_mat_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every named numeric array of a .mat file (v5 or v7.3)."""
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                return {name: np.asarray(item[()], np.float64).T for name, item in f.items()
                        if isinstance(item, h5py.Dataset) and item.dtype.kind in "iuf"}
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc}), expected a MATLAB .mat file") from None
    try:
        return dict(_v5_arrays(data))
    except (struct.error, ValueError, zlib.error, KeyError) as exc:
        raise SourceError(f"{path}: not a readable MATLAB v5 .mat file ({exc}), expected numeric "
                          "matrices") from None


def _v5_arrays(data: bytes) -> Iterator[tuple[str, np.ndarray]]:
    if len(data) < HEADER_BYTES or data[126:128] not in (b"IM", b"MI"):
        raise ValueError("no MATLAB 5.0 header")
    endian = "<" if data[126:128] == b"IM" else ">"
    for kind, body in _elements(data, HEADER_BYTES, endian):
        if kind == MI_COMPRESSED:
            kind, body = next(_elements(zlib.decompress(body), 0, endian))
        if kind == MI_MATRIX:
            array = _matrix(body, endian)
            if array is not None:
                yield array


def _elements(data: bytes, offset: int, endian: str) -> Iterator[tuple[int, bytes]]:
    """(data type, bytes) of each data element from ``offset`` on."""
    while offset + 8 <= len(data):
        kind, size = struct.unpack_from(endian + "II", data, offset)
        if kind >> 16:  # small element: size in the upper half, data in the tag's 2nd word
            kind, size = kind & 0xFFFF, kind >> 16
            yield kind, data[offset + 4:offset + 4 + size]
            offset += 8
            continue
        if offset + 8 + size > len(data):
            raise ValueError(f"element of {size} bytes runs past the end")
        yield kind, data[offset + 8:offset + 8 + size]
        # Compressed elements are not padded; others end on an 8-byte boundary.
        offset += 8 + (size if kind == MI_COMPRESSED else -(-size // 8) * 8)


def _matrix(body: bytes, endian: str) -> tuple[str, np.ndarray] | None:
    """(name, array) of a real numeric miMATRIX, None for anything else (cells, structs...)."""
    parts = list(_elements(body, 0, endian))
    if len(parts) < 4 or parts[0][0] != MI_UINT32:
        return None
    flags = struct.unpack_from(endian + "I", parts[0][1])[0]
    if (flags & 0xFF) not in NUMERIC_CLASSES or flags & COMPLEX_FLAG:
        return None
    (dims_type, dims), (_, name), (real_type, real) = parts[1], parts[2], parts[3]
    if dims_type not in (MI_INT32, MI_UINT32) or real_type not in NUMERIC:  # some writers: u4
        return None
    shape = np.frombuffer(dims, endian + NUMERIC[dims_type])
    values = np.frombuffer(real, endian + NUMERIC[real_type]).astype(np.float64)
    return name.decode("ascii"), values.reshape(tuple(shape.tolist()), order="F")
