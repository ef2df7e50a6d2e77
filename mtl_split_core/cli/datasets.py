"""Loading the dataset a command names, with a missing folder reported as an input error."""

from __future__ import annotations

from typing import Any

from mtl_split_core.errors import InputError


def load_dataset_arg(path: str, splits: tuple[str, ...]) -> dict[str, Any]:
    """``load_dataset`` for a path given on the command line."""
    from mtl_split_core.data.dataset import load_dataset

    try:
        return load_dataset(path, splits)
    except FileNotFoundError as err:
        raise InputError(f"dataset {path}: {err}") from None
