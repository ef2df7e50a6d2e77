"""Pictures people look at: class colours, depth colours, detections, annotated views, sheets.

All images are ``uint8 (H, W, 3)`` RGB. Segmentation ids use 255 = ignore (docs/CONTRACTS.md),
depth is metres with 0 / NaN / inf = invalid. Everything is vectorised (per frame on a 2-core
robot CPU); only the few detections are drawn in a Python loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from numpy.typing import ArrayLike

from mtl_split_core.classes import IGNORE_ID
from mtl_split_core.geometry import median_depth_in_box, valid_depth_mask

BACKGROUND_RGB = (64, 64, 64)
MAX_CLASSES = 256  # segmentation travels as mono8
# Sampled once: colorize_depth is then a table lookup.
TURBO_LUT: np.ndarray = np.round(colormaps["turbo"](np.linspace(0.0, 1.0, 256))[:, :3] * 255
                                 ).astype(np.uint8)
_FONT = cv2.FONT_HERSHEY_SIMPLEX

# Hand-picked first colours (matplotlib tab10 without its grey, then the light tab20 shades):
# familiar, readable next to each other and under white/black text.
_BASE_COLORS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (219, 219, 141), (158, 218, 229),
)


# ----------------------------------------------------------------------------------- colours
def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of ``(N, 3)`` sRGB 0..255, to measure how different colours look."""
    c = np.asarray(rgb, np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                  [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                     200 * (f[:, 1] - f[:, 2])], axis=1)


@lru_cache(maxsize=1)
def _full_palette() -> np.ndarray:
    """Background, the base colours, then greedy farthest-point colours in L*a*b*.

    Greedy extension is deterministic and prefix-stable: class i keeps its colour whatever n
    is asked for. Candidates are a 16-level RGB grid without very dark / very light colours,
    so nothing looks like "invalid" black or vanishes under white label text.
    """
    colors: list[tuple[int, ...]] = [BACKGROUND_RGB, *_BASE_COLORS]
    levels = np.arange(0, 256, 17)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    lab = _srgb_to_lab(grid)
    keep = (lab[:, 0] > 35) & (lab[:, 0] < 90)
    grid, lab = grid[keep], lab[keep]
    used = _srgb_to_lab(np.array([*colors, (0, 0, 0), (255, 255, 255)]))
    dist = ((lab[:, None, :] - used[None]) ** 2).sum(-1).min(1)
    while len(colors) < MAX_CLASSES:
        j = int(np.argmax(dist))
        colors.append(tuple(int(v) for v in grid[j]))
        dist = np.minimum(dist, ((lab - lab[j]) ** 2).sum(-1))
    palette = np.array(colors, np.uint8)
    palette.setflags(write=False)
    return palette


def class_palette(n: int) -> np.ndarray:
    """``uint8 (n, 3)`` distinct RGB colours; 0 = background dark grey. Stable: the colour of
    class i never depends on n (``class_palette(5) == class_palette(20)[:5]``)."""
    if not 0 <= n <= MAX_CLASSES:
        raise ValueError(f"n must be in [0, {MAX_CLASSES}] (mono8 class ids), got {n}")
    return _full_palette()[:n].copy()


def detection_palette(detection_classes: Sequence[str], segmentation_classes: Sequence[str]
                      ) -> np.ndarray:
    """``uint8 (len(detection_classes), 3)``: each detection class in the colour its name has
    in ``class_palette`` over the segmentation classes, so a box matches its object's pixels.
    Classes segmentation lacks get the colours after the segmentation's, in order."""
    full = _full_palette()
    seg_index = {name: i for i, name in enumerate(segmentation_classes)}
    ids, extra = [], len(segmentation_classes)
    for name in detection_classes:
        if name in seg_index:
            ids.append(seg_index[name])
        else:
            ids.append(extra)
            extra += 1
    return full[np.asarray(ids, np.intp) % MAX_CLASSES].reshape(-1, 3).copy()


def colorize_segmentation(ids: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class ids ``(H, W)`` -> ``uint8 (H, W, 3)``; ids outside the palette and 255 are black."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"segmentation ids must be (H, W), got shape {ids.shape}")
    palette = np.asarray(palette, np.uint8).reshape(-1, 3)
    # A 256-entry table covers every uint8 id in one gather; other dtypes are clipped into it
    # after marking what is out of range.
    lut = np.zeros((MAX_CLASSES + 1, 3), np.uint8)  # last row: "out of range" -> black
    n = min(len(palette), MAX_CLASSES)
    lut[:n] = palette[:n]
    lut[IGNORE_ID] = 0
    if ids.dtype == np.uint8:
        return lut[ids]
    idx = np.where((ids >= 0) & (ids < MAX_CLASSES), ids, MAX_CLASSES).astype(np.intp)
    return lut[idx]


def _depth_range(depth: np.ndarray, valid: np.ndarray, min_depth: float | None,
                 max_depth: float | None) -> tuple[float, float]:
    """The display range: given values, else the 1st..99th percentile of the valid depths
    (a few stray far pixels must not flatten the whole picture)."""
    if min_depth is None or max_depth is None:
        values = depth[valid]
        lo, hi = np.percentile(values, (1, 99)) if values.size else (0.1, 1.0)
        min_depth = float(lo) if min_depth is None else min_depth
        max_depth = float(hi) if max_depth is None else max_depth
    min_depth = max(float(min_depth), 1e-3)
    max_depth = max(float(max_depth), min_depth * 1.001)
    return min_depth, max_depth


def _normalize_depth(depth: np.ndarray, valid: np.ndarray, lo: float, hi: float,
                     log: bool) -> np.ndarray:
    """0 = near (``lo``) .. 1 = far (``hi``), clipped; invalid pixels get 1 (far)."""
    d = np.where(valid, depth, hi).astype(np.float32)
    if log:
        t = (np.log(np.maximum(d, lo)) - np.log(lo)) / (np.log(hi) - np.log(lo))
    else:
        t = (d - lo) / (hi - lo)
    return np.clip(t, 0.0, 1.0)


def colorize_depth(depth: np.ndarray, min_depth: float | None = None,
                   max_depth: float | None = None, log: bool = True,
                   legend: bool = False) -> np.ndarray:
    """Metric depth ``(H, W)`` -> turbo ``uint8 (H, W, 3)`` RGB; invalid pixels black.

    Near is red, far is blue (the warm end draws the eye to what is close). The range defaults
    to robust percentiles of this frame; pass fixed values to compare frames. ``log`` (default)
    gives each doubling of distance the same colour span: a robot sees 0.5 m to 40 m, and a
    linear scale paints everything near in one colour. ``legend`` draws a small colour bar
    with the range in metres (near end left).
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    valid = valid_depth_mask(depth)
    lo, hi = _depth_range(depth, valid, min_depth, max_depth)
    t = _normalize_depth(depth, valid, lo, hi, log)
    out = TURBO_LUT[np.round((1.0 - t) * 255).astype(np.uint8)]
    out[~valid] = 0
    if legend:
        _draw_depth_legend(out, lo, hi)
    return out


def _draw_depth_legend(img: np.ndarray, lo: float, hi: float) -> None:
    """Colour bar in the bottom-left corner: near (red) ... far (blue) with metres."""
    h, w = img.shape[:2]
    bar_w, bar_h = max(40, w // 4), max(6, h // 40)
    scale = _font_scale(w)
    near, far = f"{lo:.1f}m", f"{hi:.1f}m"
    (tw, th), base = cv2.getTextSize(far, _FONT, scale, 1)
    box_w = bar_w + tw * 2 + 16
    if box_w > w or bar_h + th + 10 > h:
        return  # too small to be readable
    y0 = h - bar_h - 6
    x0 = 4 + tw + 4
    cv2.rectangle(img, (0, y0 - 4), (box_w, h - 1), (0, 0, 0), -1)
    ramp = TURBO_LUT[np.linspace(255, 0, bar_w).astype(np.uint8)]
    img[y0:y0 + bar_h, x0:x0 + bar_w] = ramp[None]
    ty = y0 + bar_h // 2 + th // 2
    cv2.putText(img, near, (4, ty), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(img, far, (x0 + bar_w + 4, ty), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


# -------------------------------------------------------------------------------- detections
def _font_scale(width: int) -> float:
    # 0.4 is the smallest Hershey size that stays legible at 320 px; grow with the image.
    return max(0.4, min(1.2, width / 800))


def _label_text(name: str, score: float | None, depth: float | None) -> str:
    parts = [name]
    if score is not None:
        parts.append(f"{float(score):.2f}")
    if depth is not None and np.isfinite(depth) and depth > 0:
        parts.append(f"{float(depth):.1f}m")
    return " ".join(parts)


def _text_color(bg: Iterable[int]) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones (Rec. 601 luma)."""
    r, g, b = (int(v) for v in bg)
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two (x1, y1, x2, y2) rectangles share any area."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_detections(rgb: np.ndarray, boxes: ArrayLike, class_ids: Sequence[int] | np.ndarray,
                    scores: Sequence[float] | np.ndarray | None, class_names: Sequence[str],
                    palette: ArrayLike, depths: Sequence[float] | np.ndarray | None = None
                    ) -> np.ndarray:
    """A copy of ``rgb`` with one rectangle and a "name 0.87 3.2m" label per detection.

    ``boxes`` are ``(K, 4)`` x1, y1, x2, y2 pixel edges (x2/y2 exclusive) in this image;
    colours are ``palette[class_id % len(palette)]``. ``scores`` and ``depths`` may be None;
    depths <= 0 (unknown) are left out of the label.
    """
    out = np.ascontiguousarray(np.array(rgb, dtype=np.uint8, copy=True))
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {out.shape}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return out
    h, w = out.shape[:2]
    palette = np.asarray(palette, np.uint8).reshape(-1, 3)
    scale = _font_scale(w)
    thickness = max(1, round(min(h, w) / 240))
    labels = []
    for i, box in enumerate(boxes):
        if not np.all(np.isfinite(box)):
            continue
        cid = int(class_ids[i])
        color = tuple(int(v) for v in palette[cid % len(palette)])
        name = class_names[cid] if 0 <= cid < len(class_names) else str(cid)
        text = _label_text(name, None if scores is None else scores[i],
                           None if depths is None else depths[i])
        x1 = int(np.clip(np.floor(box[0]), 0, w - 1))
        y1 = int(np.clip(np.floor(box[1]), 0, h - 1))
        x2 = int(np.clip(np.ceil(box[2]) - 1, 0, w - 1))
        y2 = int(np.clip(np.ceil(box[3]) - 1, 0, h - 1))
        # A dark outline keeps the box visible over its own class colour (annotate fills
        # objects with it). Axis-aligned lines need no anti-aliasing blur.
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 0), thickness + 2)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        score = -np.inf if scores is None else float(scores[i])
        labels.append((score, text, color, (x1, y1, x2, y2)))
    # Labels after all boxes (never hidden by another box), most confident first so they get
    # the best spot; each goes above its box, else below it (not over a small object), else
    # inside its top or bottom, whichever first misses the labels already placed.
    placed: list[tuple[int, int, int, int]] = []
    for _, text, color, (x1, y1, _x2, y2) in sorted(labels, key=lambda item: -item[0]):
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
        lw, lh = tw + 4, th + base + 2
        lx = min(x1, max(0, w - lw))
        rects = [(lx, y, lx + lw, y + lh) for y in
                 (int(np.clip(y, 0, max(0, h - lh))) for y in (y1 - lh, y2 + 1, y1, y2 - lh))]
        rect = next((r for r in rects if not any(_overlaps(r, q) for q in placed)), rects[0])
        placed.append(rect)
        cv2.rectangle(out, rect[:2], rect[2:], color, -1)
        cv2.putText(out, text, (rect[0] + 2, rect[1] + th + 1), _FONT, scale,
                    _text_color(color), 1, cv2.LINE_AA)
    return out


# ------------------------------------------------------------------------------- server view
def _depth_shading(depth: np.ndarray) -> np.ndarray:
    """Brightness factor per pixel: 1.0 near .. 0.3 far (log scale), 0.2 where invalid."""
    valid = valid_depth_mask(depth)
    lo, hi = _depth_range(depth, valid, None, None)
    t = _normalize_depth(depth, valid, lo, hi, log=True)
    shade = 1.0 - 0.7 * t
    shade[~valid] = 0.2
    return shade


def annotate(seg_ids: np.ndarray | None, depth: np.ndarray | None, boxes: ArrayLike,
             class_ids: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray | None,
             class_names: Sequence[str], image: np.ndarray | None = None, *,
             seg_palette: np.ndarray | None = None, det_palette: np.ndarray | None = None,
             box_depths: Sequence[float] | np.ndarray | None = None, alpha: float = 0.45
             ) -> np.ndarray:
    """The server's annotated view, ``uint8 (H, W, 3)`` RGB at the maps' resolution.

    Without ``image`` (the server only has features) the background is the segmentation
    colours shaded by depth, near brighter, so shapes and distance read at a glance; with only
    one of the maps, that map alone (depth in turbo). With ``image`` (resized to the maps if
    needed) the segmentation is blended over it with ``alpha``. Detections go on top; boxes must
    be in the maps' pixels. Their depth label is ``box_depths`` or, if None, the median depth in
    each box.

    Colours: ``seg_palette`` defaults to ``class_palette(256)``, i.e. the same colours as
    ``colorize_segmentation(seg, class_palette(n))``. ``det_palette`` defaults to
    ``class_palette`` by detection id; pass ``detection_palette(card lists)`` so that boxes
    take the colour of their class in segmentation.
    """
    maps = [m for m in (seg_ids, depth) if m is not None]
    if maps:
        h, w = np.asarray(maps[0]).shape[:2]
        if any(np.asarray(m).shape[:2] != (h, w) for m in maps):
            # Only reached with both maps: maps == [seg_ids, depth].
            raise ValueError(f"segmentation {np.shape(maps[0])} and depth {np.shape(maps[1])} "
                             f"sizes differ")
    elif image is not None:
        h, w = np.asarray(image).shape[:2]
    else:
        raise ValueError("annotate needs at least one of seg_ids, depth or image")
    if seg_palette is None:
        seg_palette = class_palette(MAX_CLASSES)
    if det_palette is None:
        det_palette = class_palette(MAX_CLASSES)

    seg_rgb = colorize_segmentation(seg_ids, seg_palette) if seg_ids is not None else None
    if image is not None:
        base: np.ndarray = np.asarray(image, np.uint8)
        if base.ndim == 2:
            base = np.repeat(base[:, :, None], 3, axis=2)
        if base.shape[:2] != (h, w):
            base = cv2.resize(base, (w, h), interpolation=cv2.INTER_AREA)
        view = base.copy()
        if seg_rgb is not None:
            known = np.asarray(seg_ids) != IGNORE_ID
            blend = cv2.addWeighted(base, 1.0 - alpha, seg_rgb, alpha, 0.0)
            view[known] = blend[known]
    elif seg_rgb is not None and depth is not None:
        shade = _depth_shading(np.asarray(depth))
        view = (seg_rgb.astype(np.float32) * shade[:, :, None]).astype(np.uint8)
    elif seg_rgb is not None:
        view = seg_rgb
    else:
        assert depth is not None  # checked above: without seg_ids and image, depth is set
        view = colorize_depth(depth)

    if box_depths is None and depth is not None:
        box_depths = [median_depth_in_box(depth, b) for b in np.asarray(boxes).reshape(-1, 4)]
    return draw_detections(view, boxes, class_ids, scores, class_names, det_palette,
                           box_depths)


# ---------------------------------------------------------------------------- contact sheet
def _as_rgb_u8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"contact sheet cells must be uint8 images, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"contact sheet cells must be (H, W) or (H, W, 3), got {img.shape}")
    return img


def _put_centered(img: np.ndarray, text: str, x0: int, width: int, y0: int, height: int,
                  scale: float, color: tuple[int, int, int] = (20, 20, 20)) -> None:
    """Text centred in a box; shrunk until it fits, then cut with '…'-like '..'."""
    while scale > 0.3 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width - 6:
        scale -= 0.05
    while len(text) > 3 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width - 6:
        text = text[:-3] + ".."
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    org = (x0 + (width - tw) // 2, y0 + (height + th) // 2)
    cv2.putText(img, text, org, _FONT, scale, color, 1, cv2.LINE_AA)


def contact_sheet(rows: list[list[np.ndarray]], titles: list[str] | None = None,
                  path: str | Path | None = None, *, cell_wh: tuple[int, int] | None = None,
                  row_labels: list[str] | None = None, gap: int = 4) -> np.ndarray:
    """A grid of RGB images (rows = frames, columns = views) with column titles, as PNG.

    Every cell is resized to ``cell_wh`` (default: the first image's size, at most 480 px
    wide): shrinking uses area averaging, enlarging nearest neighbour so class maps stay crisp.
    Short rows are padded with blank cells. ``row_labels`` go in a left margin. Returns the
    sheet (RGB) and writes it to ``path`` if given (parent folders are created).
    """
    if not rows or not any(len(r) for r in rows):
        raise ValueError("contact sheet needs at least one image")
    n_cols = max(len(r) for r in rows)
    first = _as_rgb_u8(next(img for r in rows for img in r))
    if cell_wh is None:
        fh, fw = first.shape[:2]
        k = min(1.0, 480 / fw)
        cell_wh = (max(1, round(fw * k)), max(1, round(fh * k)))
    cw, ch = int(cell_wh[0]), int(cell_wh[1])
    scale = max(0.45, min(0.8, cw / 500))
    title_h = int(round(28 * scale / 0.45)) if titles else 0
    label_w = 0
    if row_labels:
        label_w = max(cv2.getTextSize(t, _FONT, scale, 1)[0][0] for t in row_labels) + 12
    width = label_w + n_cols * cw + (n_cols + 1) * gap
    height = title_h + len(rows) * ch + (len(rows) + 1) * gap
    sheet = np.full((height, width, 3), 255, np.uint8)
    if titles:
        for c, title in enumerate(titles[:n_cols]):
            _put_centered(sheet, str(title), label_w + gap + c * (cw + gap), cw, 0, title_h + gap,
                          scale)
    for r, row in enumerate(rows):
        y = title_h + gap + r * (ch + gap)
        if row_labels and r < len(row_labels):
            _put_centered(sheet, str(row_labels[r]), 0, label_w, y, ch, scale)
        for c in range(n_cols):
            x = label_w + gap + c * (cw + gap)
            if c >= len(row) or row[c] is None:
                sheet[y:y + ch, x:x + cw] = 230  # blank cell: light grey, not "black = invalid"
                continue
            img = _as_rgb_u8(row[c])
            if img.shape[:2] != (ch, cw):
                shrink = img.shape[1] >= cw and img.shape[0] >= ch
                img = cv2.resize(img, (cw, ch), interpolation=cv2.INTER_AREA if shrink
                                 else cv2.INTER_NEAREST)
            sheet[y:y + ch, x:x + cw] = img
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write contact sheet to {path}")
    return sheet
