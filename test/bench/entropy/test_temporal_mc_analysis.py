"""bench/entropy/temporal_mc_analysis.py: the integer warp of the reference's symbols and the
sim's true flow (the analysis' predictors and its oracle rest on them)."""

import math

import numpy as np
from temporal_mc_analysis import ONE, grid, true_flow, warp

RNG = np.random.default_rng(0)
REF = RNG.integers(0, 12, (3, 5, 6)).astype(np.int32)


def test_zero_motion_is_the_reference():
    assert np.array_equal(warp(REF, *grid(5, 6, 0, 0)), REF)
    assert np.array_equal(warp(REF, *grid(5, 6, 0, 0), half=True), 2 * REF)


def test_whole_position_shift_moves_the_grid_and_repeats_the_border():
    out = warp(REF, *grid(5, 6, 0, 4))            # dx = 4 quarters: one position
    assert np.array_equal(out[..., :-1], REF[..., 1:])
    assert np.array_equal(out[..., -1], REF[..., -1])
    out = warp(REF, *grid(5, 6, -4, 0))
    assert np.array_equal(out[:, 1:], REF[:, :-1])
    assert np.array_equal(out[:, 0], REF[:, 0])


def test_half_position_rounds_half_up_in_integers():
    ref = np.array([[[2, 3, 7]]], np.int32)       # (1, 1, 3)
    out = warp(ref, *grid(1, 3, 0, 2))            # halfway between neighbours
    assert out.tolist() == [[[3, 5, 7]]]          # 2.5 -> 3, 5 -> 5, border 7
    assert warp(ref, *grid(1, 3, 0, 2), half=True).tolist() == [[[5, 10, 14]]]
    assert out.dtype == np.int64


def test_zoom_spreads_samples_about_the_centre():
    qy, qx = grid(5, 7, 0, 0, zoom=8)
    assert qx[0, 3] == 3 * ONE and qy[2, 0] == 2 * ONE     # the centre stays
    assert qx[0, 0] < 0 and qx[0, 6] > 6 * ONE             # the edges move outwards


def _pose(yaw):
    return (0.0, 0.0, 1.0, yaw, 0.0)


def test_true_flow_is_zero_without_motion_and_follows_a_turn():
    h, w, f = 32, 48, 40.0
    k = np.array([f, 0, w / 2, 0, f, h / 2 - 1, 0, 0, 1], float)
    depth = np.full((h, w), 5.0, np.float32)
    qy, qx = true_flow(depth, k, _pose(0.0), _pose(0.0), 16)
    assert np.array_equal((qy, qx), grid(2, 3, 0, 0))
    # Turning left (yaw up) moves the scene right: a pixel now was further left before.
    turn = 0.05
    qy, qx = true_flow(depth, k, _pose(turn), _pose(0.0), 16)
    shift = (qx - grid(2, 3, 0, 0)[1]) / ONE * 16
    assert np.all(shift < 0)
    assert abs(shift[0, 1] + f * math.tan(turn)) < 0.5  # the image centre: f tan(yaw) pixels
    assert np.all(np.abs(qy - grid(2, 3, 0, 0)[0]) <= ONE // 8)
