"""Simulator renders whose labels are known exactly (tests of the data sources)."""

import pytest

from support.data_layouts import render


@pytest.fixture(scope="session")
def frames():
    """Four 96x72 renders (the scene seed is chosen so that the first three show objects)."""
    out = render(3, 96, 72, 4)
    assert all(len(f.labels) for f in out[:3])
    return out


@pytest.fixture(scope="session")
def wide_frames():
    """Two 120x60 renders: letterboxed into 64x48 they get padding above and below."""
    return render(5, 120, 60, 2)
