"""Loading a data source by its command-line spec, and asserting one-line errors (the data
source tests share these)."""

import pytest

from mtl_split_core.data.sources import DataSpec, SourceError


def load(spec: str, split: str = "train") -> list:
    """Every sample of ``spec``'s ``split``."""
    return list(DataSpec.parse(spec).open(split))


def one_line_error(spec: str, *names: str, split: str = "train") -> str:
    """Loading ``spec`` fails with a one-line SourceError naming each of ``names``."""
    with pytest.raises(SourceError) as err:
        load(spec, split)
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message, (name, message)
    return message
