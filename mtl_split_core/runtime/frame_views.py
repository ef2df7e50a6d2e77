"""Views of whole frames made with the batch on the model's device: class maps coloured, and
the depth map back-projected into a coloured point grid.

Only what a frame's subscribers want is made (``ViewRequest``: the ROS adapter derives it
from the wanted outputs), for the rows of the batch that want it. The same torch functions
run on CPU tensors when an output is built from a result that lacks the view (a bag, a test),
so a view is the same bytes wherever it was made.

The point grid is (rows, cols, 4) float32: x, y, z in the map camera's optical frame and the
0x00RRGGBB colour bits in the fourth slot (``geometry.XYZRGB_FIELDS``); ``valid_points``
keeps the points with a usable depth, in row-major order, as one (M, 4) PointCloud2 buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mtl_split_core.geometry import Intrinsics, reference_camera
from mtl_split_core.viz import colorize_segmentation

CLOUD_GREY = 200  # the colour of points when there is no class map


@dataclass(frozen=True)
class ViewRequest:
    """What one frame's subscribers want beyond the result fields: ``colorize`` the class-map
    fields to colour (rgb8), ``cloud_stride`` > 0: the point grid of every that-many-th row
    and column of the depth map (coloured by ``segmentation`` when there is one)."""

    colorize: frozenset[str] = field(default_factory=frozenset)
    cloud_stride: int = 0


NO_VIEWS = ViewRequest()


def color_table(palette: np.ndarray) -> np.ndarray:
    """(256, 3) uint8: the colour of every uint8 class id (``viz.colorize_segmentation``'s)."""
    return colorize_segmentation(np.arange(256, dtype=np.uint8)[None], palette)[0]


def colorize(ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """uint8 class ids (N, H, W) -> (N, H, W, 3) uint8 through ``table`` (``color_table``)."""
    return table[ids.long()]


def map_camera(camera: Intrinsics | None, source_size: tuple[int, int],
               map_hw: tuple[int, int], reference_focal: float | None = None,
               model_px_per_source_px: float = 1.0) -> Intrinsics:
    """The camera of an output map of ``map_hw`` (H, W): the source camera scaled to the map;
    without one the model's reference camera (``geometry.reference_camera``: the camera depth
    assumes, so the point cloud agrees with depth)."""
    cam = camera if camera is not None else reference_camera(
        source_size[0], source_size[1], reference_focal, model_px_per_source_px)
    return cam.scaled(map_hw[1] / cam.width, map_hw[0] / cam.height)


def camera_rows(cameras: list[Intrinsics]) -> np.ndarray:
    """(N, 4) float32 fx, fy, cx, cy: the map cameras of a batch, as ``point_grid`` takes."""
    return np.array([(c.fx, c.fy, c.cx, c.cy) for c in cameras], np.float32).reshape(-1, 4)


def point_grid(depth: torch.Tensor, ids: torch.Tensor | None, cameras: torch.Tensor,
               palette: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, H, W) depth (metres, map pixels) -> (N, ceil(H/s), ceil(W/s), 4) float32 point grid
    (module docstring). ``cameras`` (N, 4) fx, fy, cx, cy float32 of the maps; ``ids`` (N, H, W)
    class ids colour the points (``palette`` (C, 3) uint8, ids clipped into it), else grey."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    z = depth[:, ::stride, ::stride].float()
    n, h, w = z.shape
    rows = torch.arange(0, h * stride, stride, device=z.device, dtype=torch.float32)
    cols = torch.arange(0, w * stride, stride, device=z.device, dtype=torch.float32)
    fx, fy, cx, cy = (cameras[:, i].reshape(n, 1, 1) for i in range(4))
    # Integer storage: the colour bits are copied as integers (a float copy could flush
    # those that read as denormal floats).
    bits = torch.empty((n, h, w, 4), dtype=torch.int32, device=z.device)
    grid = bits.view(torch.float32)
    grid[..., 0] = (cols.reshape(1, 1, w) - cx) * (z / fx)
    grid[..., 1] = (rows.reshape(1, h, 1) - cy) * (z / fy)
    grid[..., 2] = z
    if ids is not None:
        colors = palette[ids[:, ::stride, ::stride].long().clamp(0, len(palette) - 1)]
        rgb = (colors[..., 0].int() << 16) | (colors[..., 1].int() << 8) | colors[..., 2].int()
    else:
        rgb = torch.full((n, h, w), (CLOUD_GREY << 16) | (CLOUD_GREY << 8) | CLOUD_GREY,
                         dtype=torch.int32, device=z.device)
    bits[..., 3] = rgb
    return grid


def valid_points(grid: np.ndarray) -> np.ndarray:
    """(M, 4) float32: the points of one frame's grid with a finite, positive depth."""
    z = grid[..., 2]
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(z) & (z > 0)
    return grid[keep]


def frame_point_cloud(depth: np.ndarray, ids: np.ndarray | None, camera: Intrinsics,
                      palette: np.ndarray, stride: int) -> np.ndarray:
    """One frame's (M, 4) point cloud on the host, by ``point_grid`` (what a result made
    without the view gets: the same bytes)."""
    cam = camera_rows([camera])
    grid = point_grid(torch.from_numpy(np.asarray(depth))[None],
                      None if ids is None else torch.from_numpy(np.asarray(ids))[None],
                      torch.from_numpy(cam), torch.from_numpy(np.asarray(palette, np.uint8)),
                      stride)
    return valid_points(grid[0].numpy())
