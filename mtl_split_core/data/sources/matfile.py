"""Numeric arrays from MATLAB ``.mat`` files: v7.3 is HDF5 (h5py), v5 is what SciPy reads.

NYUv2 ships both: the labelled data set as v7.3, its ``splits.mat`` as v5. Arrays come back in
MATLAB's shape (h5py gives HDF5's reversed axis order: transposed back here), as float64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from mtl_split_core.data.sources.base import SourceError


def read_mat_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every named numeric array of a .mat file (v5 or v7.3)."""
    import h5py  # here: only NYUv2 reads .mat files, so the other sources do not need it

    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                return {name: np.asarray(item[()], np.float64).T for name, item in f.items()
                        if isinstance(item, h5py.Dataset) and item.dtype.kind in "iuf"}
        contents = scipy.io.loadmat(path)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc}), expected a MATLAB .mat file") from None
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise SourceError(f"{path}: not a readable MATLAB v5 .mat file ({exc}), expected numeric "
                          "matrices") from None
    return {name: np.asarray(value, np.float64) for name, value in contents.items()
            if not name.startswith("__") and isinstance(value, np.ndarray)
            and value.dtype.kind in "iuf"}
