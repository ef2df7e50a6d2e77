"""Loading the data a command names (``--data FORMAT:PATH[@WEIGHT][?opts]``, repeatable), with
every problem reported as an input error."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtl_split_core.errors import InputError

if TYPE_CHECKING:
    from mtl_split_core.data.sources.base import DataSpec
    from mtl_split_core.data.sources.loading import ClassLists, LoadedData

DATA_HELP = ("data set, repeatable: FORMAT:PATH[@WEIGHT][?key=value&...] with FORMAT one of "
             "sim, coco, cityscapes, nyuv2, kitti, folder (docs/DATA_FORMAT.md); a bare PATH is "
             "a sim folder (gen-data output) or a folder of shard_*.npz")
# "coco:/d" names a format; "/d/x", "./a:b" or "C:..." style paths do not.
_FORMAT_PREFIX = re.compile(r"[a-z][a-z0-9_]*:")


def load_dataset_arg(path: str, splits: tuple[str, ...]) -> dict[str, Any]:
    """``load_dataset`` for a path given on the command line."""
    from mtl_split_core.data.dataset import load_dataset

    try:
        return load_dataset(path, splits)
    except FileNotFoundError as err:
        raise InputError(f"dataset {path}: {err}") from None


def data_spec(value: str) -> DataSpec:
    """One ``--data`` value: ``FORMAT:PATH...``, or a bare path = today's sim data."""
    from mtl_split_core.data.sources import DataSpec

    if _FORMAT_PREFIX.match(value):
        return DataSpec.parse(value)
    if not value:
        raise InputError("data '': expected FORMAT:PATH or a folder")
    return DataSpec("sim", Path(value))


def read_class_map(path: str | Path) -> dict[str, str | None]:
    """A ``--class-map`` file: JSON {"source class": "model class" | null (drop)}."""
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(f"class map {path}: cannot read JSON ({err})") from None
    if not isinstance(mapping, dict) or not all(
            isinstance(v, str) and v or v is None for v in mapping.values()):
        raise InputError(f"class map {path}: expected a JSON object {{\"source class\": "
                         "\"model class\" or null}")
    return mapping


def load_data_args(values: Sequence[str], split: str, input_size: tuple[int, int],
                   class_map_path: str | Path | None = None,
                   classes: ClassLists | None = None) -> LoadedData:
    """The repeatable ``--data`` option as one ``LoadedData`` for ``split`` at ``input_size``;
    prints what was loaded (frames per source, classes without a model class)."""
    from mtl_split_core.data.sources.loading import load_sources

    specs = [data_spec(v) for v in values]
    class_map = read_class_map(class_map_path) if class_map_path else None
    loaded = load_sources(specs, split, input_size, class_map=class_map, classes=classes)
    for line in loaded.summary():
        print(f"{split}: {line}")
    return loaded
