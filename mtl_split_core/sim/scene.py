"""A random outdoor-ish scene in PyBullet and the frames a robot camera sees in it.

A scene: a ground plane, box buildings around a 20 x 20 m yard, the detection classes of
``mtl_split_core.classes`` (pybullet_data meshes) at random poses, scales and colours, and
clutter shapes. Each frame puts the camera at a random spot (height 0.3–1.5 m) turned towards
a random object (±25°), so most frames show objects at 1–8 m.

Ground truth per frame: RGB, metric depth (m), semantic ids (``SEGMENTATION_CLASSES``), and boxes
from instance masks: the visible extent of each object; objects with fewer than
``MIN_VISIBLE_PIXELS`` visible pixels or a box side under ``MIN_BOX_SIDE`` px are dropped.
Boxes are x1, y1, x2, y2 with x2/y2 exclusive (pixel edges).

A scene style (``mtl_split_core.sim.styles``) sets how the world looks and where the camera
rides.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pybullet
import pybullet_data
from pybullet_utils import bullet_client

from mtl_split_core.classes import DETECTION_CLASSES, STUFF_CLASSES, segmentation_id
from mtl_split_core.sim.camera import SimCamera, look_at
from mtl_split_core.sim.styles import STYLES

# class -> (URDF in pybullet_data, global scale range). Scales bring objects to 0.3–1.2 m.
OBJECTS = {
    "duck": ("duck_vhacd.urdf", (6.0, 10.0)),
    "teddy": ("teddy_vhacd.urdf", (6.0, 10.0)),
    "r2d2": ("r2d2.urdf", (0.6, 1.0)),
    "racecar": ("racecar/racecar.urdf", (1.3, 2.2)),
    "husky": ("husky/husky.urdf", (0.7, 1.1)),
    "table": ("table/table.urdf", (0.6, 1.0)),
    "soccerball": ("soccerball.urdf", (0.4, 0.7)),
}
# The table's collision AABB is its top only; its URDF origin already sits on the floor.
ORIGIN_ON_FLOOR = {"table"}
GROUND, BUILDING, CLUTTER = (STUFF_CLASSES.index(n) for n in ("ground", "building", "clutter"))
MIN_VISIBLE_PIXELS = 24
MIN_BOX_SIDE = 4
YARD = 10.0  # half size of the yard (m)


@dataclass
class Frame:
    rgb: np.ndarray        # (H, W, 3) uint8
    depth: np.ndarray      # (H, W) float32 metres, 0 = nothing hit
    seg: np.ndarray        # (H, W) uint8 semantic ids
    boxes: np.ndarray      # (K, 4) float32 x1, y1, x2, y2 (exclusive)
    labels: np.ndarray     # (K,) int64 detection class ids
    camera: SimCamera
    pose: tuple[float, float, float, float, float]  # x, y, z, yaw, pitch


class _BulletClient(bullet_client.BulletClient):
    """A BulletClient whose ``__del__`` works when an interrupt lands inside its constructor:
    it reads ``_client``, which the constructor sets only once connect() has returned."""

    _client = -1


class SimScene:
    """One random scene in its own PyBullet client (DIRECT: no display needed)."""

    def __init__(self, seed: int, width: int = 640, height: int = 480,
                 vfov_range: tuple[float, float] = (45.0, 70.0), style: str = "default") -> None:
        if style not in STYLES:
            raise ValueError(f"unknown scene style {style!r}; expected one of "
                             f"{', '.join(STYLES)}")
        self.rng = np.random.default_rng(seed)
        self.width, self.height = width, height
        self.vfov_range = vfov_range
        self.style = STYLES[style]
        self.client: Any = None  # a _BulletClient (untyped library) until close()
        self._texture_dir: Path | None = None
        self.semantic: dict[int, int] = {}   # body id -> semantic id
        self.detection: dict[int, int] = {}  # body id -> detection class id
        self.objects: list[np.ndarray] = []  # object positions (camera aims at them)
        try:  # an interrupt or error while building leaves no client or texture folder behind
            self.client = _BulletClient(connection_mode=pybullet.DIRECT)
            self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
            # Textures are loaded from image files: a private folder, removed by close().
            if self.style.textured:
                self._texture_dir = Path(tempfile.mkdtemp(prefix="mtl_split_sim_"))
            self._build()
            self.light = self._random_light()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client = None
        if self._texture_dir is not None:
            shutil.rmtree(self._texture_dir, ignore_errors=True)
            self._texture_dir = None

    def __enter__(self) -> SimScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- building -------------------------------------------------------------------------
    def _colour(self, lo: float = 0.15, hi: float = 0.95) -> list[float]:
        return [*self.rng.uniform(lo, hi, 3).tolist(), 1.0]

    def _build(self) -> None:
        c, rng = self.client, self.rng
        plane = c.loadURDF("plane.urdf", useFixedBase=True)
        c.changeVisualShape(plane, -1, rgbaColor=self._colour(0.25, 0.7), textureUniqueId=-1)
        if self.style.textured:
            c.changeVisualShape(plane, -1, rgbaColor=[1, 1, 1, 1],
                                textureUniqueId=self._checker_texture())
        self.semantic[plane] = GROUND
        for _ in range(int(rng.integers(6, 12))):  # buildings around the yard
            side = rng.integers(4)
            along = rng.uniform(-YARD, YARD)
            half = [rng.uniform(1.0, 4.0), rng.uniform(0.5, 2.0), rng.uniform(1.5, 6.0)]
            dist = YARD + rng.uniform(0.5, 4.0)
            pos = [[along, dist], [along, -dist], [dist, along], [-dist, along]][side]
            yaw = 0.0 if side < 2 else math.pi / 2
            self._box(half, [*pos, half[2]], yaw, self._colour(0.3, 0.9), BUILDING)
        for name in DETECTION_CLASSES:  # every class at least once, some twice
            for _ in range(int(rng.integers(1, 3))):
                self._object(name)
        for _ in range(int(rng.integers(4, 10))):  # clutter
            kind = rng.integers(3)
            pos = [*rng.uniform(-YARD + 1, YARD - 1, 2)]
            if kind == 0:
                half = rng.uniform(0.1, 0.5, 3).tolist()
                self._box(half, [*pos, half[2]], rng.uniform(0, math.pi), self._colour(),
                          CLUTTER)
            else:
                r = float(rng.uniform(0.1, 0.4))
                h = float(rng.uniform(0.3, 1.5))
                shape = (dict(shapeType=pybullet.GEOM_CYLINDER, radius=r, length=h) if kind == 1
                         else dict(shapeType=pybullet.GEOM_SPHERE, radius=r))
                vis = c.createVisualShape(rgbaColor=self._colour(), **shape)
                z = h / 2 if kind == 1 else r
                body = c.createMultiBody(0, -1, vis, [*pos, z])
                self.semantic[body] = CLUTTER

    def _box(self, half: Sequence[float], pos: Sequence[float], yaw: float,
             colour: Sequence[float], semantic: int) -> None:
        c = self.client
        vis = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=half, rgbaColor=colour)
        body = c.createMultiBody(0, -1, vis, pos, c.getQuaternionFromEuler([0, 0, yaw]))
        self.semantic[body] = semantic

    def _checker_texture(self) -> int:
        """A random two-colour checker texture, loaded into the client from a file in the
        scene's texture folder."""
        assert self._texture_dir is not None
        a, b = (np.asarray(self._colour(0.1, 0.9)[:3]) * 255 for _ in range(2))
        cells = int(self.rng.integers(4, 12))
        ij = np.indices((256, 256)) * cells // 256
        image = np.where(((ij[0] + ij[1]) % 2)[..., None] == 1, a, b).astype(np.uint8)
        path = self._texture_dir / "ground.png"
        cv2.imwrite(str(path), image[..., ::-1])
        return int(self.client.loadTexture(str(path)))

    def _object(self, name: str) -> None:
        c, rng = self.client, self.rng
        urdf, (lo, hi) = OBJECTS[name]
        body = c.loadURDF(urdf, [0, 0, 0], useFixedBase=True, globalScaling=float(
            rng.uniform(lo, hi)))
        if rng.random() < 0.6:  # recolour most objects; keep some original textures
            colour = self._colour()
            for link in range(-1, c.getNumJoints(body)):
                c.changeVisualShape(body, link, rgbaColor=colour)
        lo_z = 0.0 if name in ORIGIN_ON_FLOOR else min(
            c.getAABB(body, link)[0][2] for link in range(-1, c.getNumJoints(body)))
        pos = [*rng.uniform(-YARD + 1, YARD - 1, 2), -lo_z]
        orn = c.getQuaternionFromEuler([0, 0, rng.uniform(-math.pi, math.pi)])
        c.resetBasePositionAndOrientation(body, pos, orn)
        self.semantic[body] = segmentation_id(DETECTION_CLASSES.index(name))
        self.detection[body] = DETECTION_CLASSES.index(name)
        self.objects.append(np.array(pos[:2]))

    def _random_light(self) -> dict:
        rng, style = self.rng, self.style
        return dict(lightDirection=[*rng.uniform(-1, 1, 2).tolist(),
                                    float(rng.uniform(*style.light_elevation))],
                    lightColor=rng.uniform(*style.light_colour, 3).tolist(),
                    lightAmbientCoeff=float(rng.uniform(*style.ambient)),
                    lightDiffuseCoeff=float(rng.uniform(*style.diffuse)),
                    lightSpecularCoeff=float(rng.uniform(0.0, 0.2)))

    # --- cameras and frames ---------------------------------------------------------------
    def random_pose(self) -> tuple[float, float, float, float, float]:
        """A camera spot in the yard, 0.3–1.5 m high, facing a random object ±25°."""
        rng = self.rng
        target = self.objects[int(rng.integers(len(self.objects)))]
        for _ in range(20):
            xy = rng.uniform(-YARD + 0.5, YARD - 0.5, 2)
            dist = np.linalg.norm(target - xy)
            if 1.2 < dist < 8.0:
                break
        yaw = math.atan2(target[1] - xy[1], target[0] - xy[0]) + math.radians(rng.uniform(-25, 25))
        height = float(rng.uniform(*self.style.camera_height))
        pitch = -math.radians(rng.uniform(*self.style.pitch_deg)) * (0.5 + height)
        return float(xy[0]), float(xy[1]), height, yaw, pitch

    def camera(self) -> SimCamera:
        return SimCamera(self.width, self.height, float(self.rng.uniform(*self.vfov_range)))

    def render(self, pose: tuple[float, float, float, float, float] | None = None,
               camera: SimCamera | None = None) -> Frame:
        pose = pose or self.random_pose()
        camera = camera or self.camera()
        x, y, z, yaw, pitch = pose
        eye, target, up = look_at((x, y, z), yaw, pitch)
        c = self.client
        view = c.computeViewMatrix(eye.tolist(), target.tolist(), up.tolist())
        _, _, rgba, depth_buf, seg_buf = c.getCameraImage(
            camera.width, camera.height, view, camera.projection_matrix(c),
            renderer=pybullet.ER_TINY_RENDERER, shadow=int(self.style.shadows), **self.light)
        rgba = np.reshape(np.asarray(rgba, np.uint8), (camera.height, camera.width, 4))
        depth = camera.depth_from_buffer(np.reshape(depth_buf, (camera.height, camera.width)))
        body_ids = np.reshape(np.asarray(seg_buf, np.int64), (camera.height, camera.width))
        # With default flags the buffer holds the body id (-1 where nothing was hit).
        seg = np.zeros(body_ids.shape, np.uint8)
        for body, sem in self.semantic.items():
            seg[body_ids == body] = sem
        boxes, labels = boxes_from_instances(body_ids, self.detection)
        return Frame(rgb=np.ascontiguousarray(rgba[..., :3]), depth=depth, seg=seg,
                     boxes=boxes, labels=labels, camera=camera, pose=pose)


def boxes_from_instances(instance_ids: np.ndarray, detection: dict[int, int]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Visible-extent boxes (x2/y2 exclusive) for each detectable instance id in the mask;
    instances with < MIN_VISIBLE_PIXELS pixels or a side < MIN_BOX_SIDE px are dropped."""
    boxes, labels = [], []
    for body, cls in detection.items():
        ys, xs = np.nonzero(instance_ids == body)
        if ys.size < MIN_VISIBLE_PIXELS:
            continue
        x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        if x2 - x1 < MIN_BOX_SIDE or y2 - y1 < MIN_BOX_SIDE:
            continue
        boxes.append([x1, y1, x2, y2])
        labels.append(cls)
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64))
