"""Visualisation: palette, colour maps, detections, the server's annotated view, contact sheets."""

import cv2
import numpy as np
import pytest

from mtl_split_core.viz import (
    TURBO_LUT,
    annotate,
    class_palette,
    colorize_depth,
    colorize_segmentation,
    contact_sheet,
    detection_palette,
    draw_detections,
)

NAMES = ["duck", "teddy", "r2d2"]
SEG_NAMES = ["background", "ground", "wall", "clutter", "duck", "teddy", "r2d2"]


def _scene(h=120, w=160):
    """Ground (1) below a horizon, far wall (2) above, one object (5) near the camera."""
    seg = np.full((h, w), 2, np.uint8)
    seg[h // 2:] = 1
    seg[40:100, 50:90] = 5
    seg[0:4, 0:4] = 255
    depth = np.full((h, w), 8.0, np.float32)
    rows = np.arange(h // 2, h, dtype=np.float32)
    depth[h // 2:] = (480.0 / (8.0 * (rows - h // 2) + 60.0))[:, None]  # 8 m .. 0.9 m
    depth[40:100, 50:90] = 1.5
    depth[0:4, 0:4] = 0.0
    boxes = np.array([[50, 40, 90, 100]], np.float32)
    return seg, depth, boxes


def test_palette_is_distinct_and_stable():
    p = class_palette(32)
    assert p.dtype == np.uint8 and p.shape == (32, 3)
    assert tuple(p[0]) == (64, 64, 64)                       # background: dark grey
    np.testing.assert_array_equal(class_palette(5), p[:5])   # colour of class i independent of n
    np.testing.assert_array_equal(class_palette(32), p)      # and of the call
    assert tuple(p[1]) == (31, 119, 180) and tuple(p[2]) == (255, 127, 14)  # pinned
    d = np.linalg.norm(p[:, None].astype(float) - p[None].astype(float), axis=-1)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 20                                      # no two look alike
    assert np.all(p[1:].astype(int).sum(1) > 100)            # nothing near "invalid" black
    assert len({tuple(c) for c in class_palette(256)}) == 256
    with pytest.raises(ValueError):
        class_palette(257)


def test_colorize_segmentation_shapes_and_invalid_ids():
    palette = class_palette(4)
    ids = np.array([[0, 1, 2, 3], [4, 255, -1, 1000]], np.int64)
    out = colorize_segmentation(ids, palette)
    assert out.dtype == np.uint8 and out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out[0], palette)
    np.testing.assert_array_equal(out[1], 0)                 # out of range / ignore: black
    # mono8 input takes the same path as the server's segmentation image; 255 is black even
    # when the palette is 256 long.
    out8 = colorize_segmentation(ids[:1].astype(np.uint8), palette)
    np.testing.assert_array_equal(out8, out[:1])
    full = colorize_segmentation(np.array([[255, 7]], np.uint8), class_palette(256))
    np.testing.assert_array_equal(full[0, 0], 0)
    np.testing.assert_array_equal(full[0, 1], class_palette(8)[7])


def test_colorize_depth_shapes_range_and_invalid_pixels():
    depth = np.tile(np.linspace(1.0, 10.0, 64, dtype=np.float32), (16, 1))
    depth[0, :4] = [0.0, np.nan, np.inf, -1.0]
    out = colorize_depth(depth, 1.0, 10.0)
    assert out.dtype == np.uint8 and out.shape == (16, 64, 3)
    np.testing.assert_array_equal(out[0, :4], 0)
    assert np.all(out[1:].max(axis=2) > 0)                   # valid pixels are never black
    np.testing.assert_array_equal(out[5, 0], TURBO_LUT[255])  # near = warm end
    np.testing.assert_array_equal(out[5, -1], TURBO_LUT[0])   # far = cold end
    # Automatic range, log scaling and a legend all keep the contract.
    for kwargs in ({}, {"log": True}, {"legend": True}):
        auto = colorize_depth(depth, **kwargs)
        assert auto.shape == (16, 64, 3) and auto.dtype == np.uint8
    big = np.full((240, 320), 3.0, np.float32)
    assert not np.array_equal(colorize_depth(big, 1, 5, legend=True), colorize_depth(big, 1, 5))
    np.testing.assert_array_equal(colorize_depth(np.zeros((4, 4), np.float32)), 0)


def test_draw_detections_draws_on_a_copy_in_the_class_colour():
    rgb = np.full((120, 160, 3), 255, np.uint8)
    palette = class_palette(3)
    out = draw_detections(rgb, [[40, 50, 100, 110]], [1], [0.87], NAMES, palette, depths=[3.2])
    assert np.all(rgb == 255)                                 # input untouched
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert tuple(out[80, 40]) == tuple(palette[1])            # left edge of the box
    assert np.any(np.all(out[30:50, 40:110] == palette[1], axis=-1))  # label background
    # No detections, unknown class ids, boxes off-screen and no depth: no crash.
    np.testing.assert_array_equal(draw_detections(rgb, np.zeros((0, 4)), [], [], NAMES, palette),
                                  rgb)
    draw_detections(rgb, [[-20, -20, 500, 500], [150, 110, 170, 130]], [7, 0], None, NAMES,
                    palette)



def test_draw_detections_keeps_labels_of_neighbouring_boxes_apart():
    rgb = np.full((120, 160, 3), 255, np.uint8)
    palette = class_palette(3)
    # Nearly the same box twice: both labels would go to the same spot above it.
    boxes = [[40, 50, 80, 90], [40, 53, 80, 93]]
    out = draw_detections(rgb, boxes, [1, 2], [0.9, 0.8], NAMES, palette)
    for cid in (1, 2):
        label_px = np.all(out == palette[cid], axis=-1).sum()
        assert label_px > 600   # its whole label (~700 px) shows, not only the box outline

def test_annotate_without_image_shades_segmentation_by_depth():
    seg, depth, boxes = _scene()
    palette = class_palette(256)
    out = annotate(seg, depth, boxes, [1], [0.9], NAMES, seg_palette=palette,
                   det_palette=detection_palette(NAMES, SEG_NAMES))
    assert out.shape == (120, 160, 3) and out.dtype == np.uint8
    # Near ground is brighter than far ground, in the ground's colour.
    near, far = out[118, 5].astype(int), out[62, 5].astype(int)
    assert near.sum() > far.sum()
    np.testing.assert_allclose(near, palette[1], atol=3)
    np.testing.assert_array_equal(out[1, 1], 0)               # ignore id stays black
    # The box is drawn on top, in its class's segmentation colour (teddy = 5).
    assert tuple(out[70, 50]) == tuple(palette[5])
    # Only one map, or neither with an image, still gives a picture.
    assert annotate(None, depth, boxes, [1], [0.9], NAMES).shape == (120, 160, 3)
    assert annotate(seg, None, boxes, [1], [0.9], NAMES).shape == (120, 160, 3)
    with pytest.raises(ValueError):
        annotate(None, None, boxes, [1], [0.9], NAMES)


def test_annotate_with_image_blends_segmentation_over_it():
    seg, depth, boxes = _scene()
    image = np.full((240, 320, 3), 200, np.uint8)             # source size: resized to maps
    out = annotate(seg, depth, np.zeros((0, 4)), [], [], NAMES, image=image, alpha=0.5)
    assert out.shape == (120, 160, 3)
    np.testing.assert_array_equal(out[1, 1], 200)             # ignore: image shows through
    expected = cv2.addWeighted(np.full((1, 1, 3), 200, np.uint8), 0.5,
                               class_palette(2)[1:2][None], 0.5, 0)[0, 0]
    np.testing.assert_array_equal(out[110, 5], expected)


def test_contact_sheet_writes_a_png_with_the_expected_grid(tmp_path):
    seg, depth, boxes = _scene()
    rgb = np.full((120, 160, 3), 90, np.uint8)
    rows = [[rgb, draw_detections(rgb, boxes, [0], [0.5], NAMES, class_palette(3)),
             colorize_segmentation(seg, class_palette(8)), colorize_depth(depth)],
            [rgb, seg]]                                       # short row, mono8 cell
    path = tmp_path / "sheet" / "frames.png"
    sheet = contact_sheet(rows, ["input", "detections", "segmentation", "depth"], path,
                          cell_wh=(80, 60), gap=4)
    written = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(written, sheet)
    title_h = sheet.shape[0] - (2 * 60 + 3 * 4)
    assert sheet.shape[1] == 4 * 80 + 5 * 4
    assert 10 < title_h < 60                                  # a title bar on top
    assert np.any(sheet[:title_h] < 128)                      # with text in it
    # Cell (row 0, col 0) holds the resized input.
    np.testing.assert_array_equal(sheet[title_h + 4:title_h + 64, 4:84], 90)
    # Default cell = first image size; row labels add a left margin.
    sheet2 = contact_sheet(rows, None, row_labels=["frame 0", "frame 1"])
    assert sheet2.shape[0] == 2 * 120 + 3 * 4 and sheet2.shape[1] > 4 * 160 + 5 * 4
    with pytest.raises(ValueError):
        contact_sheet([], None)


def test_detection_palette_follows_the_class_names_of_the_card():
    seg = class_palette(len(SEG_NAMES))
    # Things listed after the stuff: each box colour is its class's segmentation colour.
    np.testing.assert_array_equal(detection_palette(NAMES, SEG_NAMES), seg[4:7])
    # Another card: things first, in another order, and one class segmentation lacks.
    other = detection_palette(["r2d2", "kite", "duck"], ["duck", "r2d2", "ground"])
    full = class_palette(8)
    np.testing.assert_array_equal(other, full[[1, 3, 0]])
    assert detection_palette([], SEG_NAMES).shape == (0, 3)


def test_annotate_default_detection_colours_are_by_detection_id():
    seg, depth, boxes = _scene()
    out = annotate(seg, depth, boxes, [1], [0.9], NAMES)
    assert tuple(out[70, 50]) == tuple(class_palette(2)[1])
