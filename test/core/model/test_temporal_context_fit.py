"""Fitting the temporal context tables: the contexts are the coder's, the symbols the
encoder's (hold included), the tables learn what the reference predicts, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_split_core.entropy_tables import PRECISION, EntropyTables
from mtl_split_core.model.context_fit import fit_context
from mtl_split_core.model.temporal_context_fit import (
    ebc_contexts,
    fit_temporal_context,
    sequence_symbols,
)
from mtl_split_core.temporal_codec import TemporalDecoder, TemporalEncoder
from support.entropy_blocks import correlated, v1_tables

SHAPE = (3, 6, 7)
TRAIN = correlated(80, SHAPE, 0)
EBC = EntropyTables(fit_context(EntropyTables(v1_tables(TRAIN, [0.5, 1.0])), TRAIN))


def still(n: int, seed: int, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A still field with a little noise: the reference predicts nearly every symbol."""
    field = correlated(1, shape, seed)[0]
    noise = np.random.default_rng(seed).normal(0, 0.05, (n, *shape))
    return (field + noise).astype(np.float32)


def test_ebc_contexts_are_the_ones_the_coder_codes_with():
    """Ideal bits from the fit's contexts and the card's tables = the ANS stream's length."""
    point, cpoint = EBC.points[1], EBC.context[1]
    for seed in range(3):
        x = correlated(1, SHAPE, 10 + seed)[0]
        index = point.symbols(x.reshape(3, -1))
        ctx = ebc_contexts(cpoint, index.reshape(SHAPE)).reshape(3, -1)
        bits = 0.0
        for p in range(2):
            for ch in range(3):
                cell = cpoint.cells[p][ch]
                where = np.flatnonzero(((np.add.outer(np.arange(6), np.arange(7)) % 2) == p)
                                       .ravel())
                freq = cell.weights[ctx[ch, where], index[ch, where]].astype(np.float64) + 1
                bits += float((PRECISION - np.log2(freq)).sum())
        words = EBC.encode(1, index, SHAPE)
        assert abs(len(words) * 32 - bits) <= 64 + 32  # the coder's state and rounding


@pytest.mark.parametrize("hold", [0, 500])
def test_sequence_symbols_are_what_the_encoder_sends(hold):
    tables = EntropyTables(fit_temporal_context(EBC, [still(6, 1)], [1]))
    xs = still(6, 2)
    enc, dec = TemporalEncoder(f"t30-c{hold}-ebc-1/1", tables), TemporalDecoder()
    sent = [dec.decode(enc.encode(x), tables=tables) for x in xs]
    point = tables.points[1]
    assert np.array_equal(sequence_symbols(point, xs, hold),
                          np.stack([point.symbols(s.reshape(3, -1)) for s in sent]))


def test_the_tables_learn_that_the_reference_predicts_the_symbol():
    block = fit_temporal_context(EBC, [still(10, s) for s in range(4)], [1])
    tables = EntropyTables(block)
    big = (3, 24, 24)  # a tiny tensor's stream is mostly the coder's final state
    xs = still(10, 9, big)
    enc = TemporalEncoder("t30-c0-ebc-1/1", tables)
    deltas = [len(enc.encode(x).data) - 15 for x in xs][1:]  # the words only
    ebc = [len(EBC.encode(1, EBC.points[1].symbols(x.reshape(3, -1)), big)) * 4
           for x in xs[1:]]
    assert np.mean(deltas) < 0.5 * np.mean(ebc)
    assert block["version"] == 3 and block["temporal"]["operating_points"][0] is None
    assert fit_temporal_context(EBC, [still(10, s) for s in range(4)], [1]) == block


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no context tables"):
        fit_temporal_context(EntropyTables(v1_tables(TRAIN, [1.0])), [still(3, 0)], [0])
    with pytest.raises(ValueError, match="operating points"):
        fit_temporal_context(EBC, [still(3, 0)], [2])
    with pytest.raises(ValueError, match=">= 2 frames"):
        fit_temporal_context(EBC, [still(1, 0)], [1])
