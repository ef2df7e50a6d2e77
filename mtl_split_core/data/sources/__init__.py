"""Data sources: one module per on-disk format, all yielding ``base.Sample``.

Importing this package registers every built-in format (explicitly, so import sorting cannot
drop one).
"""

from mtl_split_core.data.sources import (  # noqa: F401  (register formats)
    cityscapes,
    coco,
    folder,
    kitti,
    nyuv2,
    sim,
)
from mtl_split_core.data.sources.base import (
    DataSource,
    DataSpec,
    Sample,
    SourceError,
    register_source,
    source_formats,
    split_of,
)

__all__ = ["DataSource", "DataSpec", "Sample", "SourceError", "register_source",
           "source_formats", "split_of"]
