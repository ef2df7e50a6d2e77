"""Server results -> ROS messages: the one outputs path for the live server and for bags.

``assemble(result, source_size, header, camera_info, style, wanted, factory)`` returns
``{topic_suffix: message}`` for the wanted outputs of one frame. The server node publishes
each message; ``mtl-split process`` writes the same messages to a bag. Messages come from a
``msg_factory`` (rclpy types or rosbags types), so this module imports no message package.

Output topics (``OUTPUT_TYPES``), all with the input's header, next to the features topic:
``detections``, ``detections/markers``, ``segmentation`` (mono8 class ids),
``segmentation/color`` (rgb8), ``depth`` (32FC1 metres, REP 118), ``camera_info`` (of the
output maps), ``points`` (PointCloud2 XYZRGB) and ``annotated`` (rgb8).

Topic naming, one rule for live and bag: an edge in namespace ``NS`` reads ``NS/image`` or
``NS/image/compressed`` and publishes ``NS/mtl_split/features``; the server publishes the
outputs next to the features (``NS/mtl_split/detections`` ...). A bag's image topic maps the
same way: drop a trailing ``/compressed``, then the image's own name, so ``/cam/image_raw``
and ``/cam/image_raw/compressed`` both give ``/cam/mtl_split/...`` (``features_topic``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from mtl_split_core.geometry import (
    XYZRGB_FIELDS,
    XYZRGB_POINT_STEP,
    Intrinsics,
    backproject,
    box_to_3d,
    box_to_center_size,
    camera_intrinsics,
    center_size_to_box,
    median_depth_in_box,
    pack_xyzrgb,
    scale_boxes,
)
from mtl_split_core.tasks import get_tasks
from mtl_split_core.viz import annotate, class_palette, colorize_segmentation, detection_palette
from mtl_split_ros.image_msg import image_fields
from mtl_split_ros.msg_factory import MessageFactory

FEATURES_NAME = "mtl_split/features"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DETECTIONS = "mtl_split/msg/Detection2DArray"
OUTPUT_TYPES: dict[str, str] = {
    "detections": DETECTIONS,
    "detections/markers": "visualization_msgs/msg/MarkerArray",
    "camera_info": CAMERA_INFO,
    "segmentation": IMAGE,
    "segmentation/color": IMAGE,
    "depth": IMAGE,
    "points": "sensor_msgs/msg/PointCloud2",
    "annotated": IMAGE,
}
# Per-pixel maps any task may declare (tasks.OutputSpec kinds) -> Image encoding.
MAP_ENCODINGS: dict[str, str] = {"class_image": "mono8", "mask_image": "mono8",
                                 "float_image": "32FC1", "rgb_image": "rgb8"}
# visualization_msgs/Marker constants (the factories' classes differ; the numbers do not).
_MARKER_CUBE, _MARKER_TEXT, _MARKER_ADD, _MARKER_DELETEALL = 1, 9, 0, 3


# ------------------------------------------------------------------------------ topic names
def features_topic(image_topic: str) -> str:
    """The features topic an edge in the image's namespace publishes (module docstring)."""
    topic = image_topic.rstrip("/")
    if topic.endswith("/compressed"):
        topic = topic[: -len("/compressed")]
    namespace = topic.rsplit("/", 1)[0]
    return f"{namespace}/{FEATURES_NAME}"


def output_prefix(features: str) -> str:
    """Outputs go next to the features: ``/cam/mtl_split/features`` -> ``/cam/mtl_split/``."""
    if not features.endswith("features"):
        raise ValueError(f"feature topic {features!r} does not end in 'features'")
    return features[: -len("features")]


# ---------------------------------------------------------------------------------- style
@dataclass(frozen=True)
class OutputStyle:
    """What a model card fixes about the outputs: class names and their colours."""

    detection_classes: tuple[str, ...]
    segmentation_classes: tuple[str, ...]
    seg_palette: np.ndarray
    det_palette: np.ndarray
    point_stride: int = 4
    marker_lifetime_s: float = 1.0
    # Maps declared by tasks beyond the built-in outputs: (suffix, result field, encoding).
    task_maps: tuple[tuple[str, str, str], ...] = ()
    # The card's depth_reference_focal (model-input pixels): the camera outputs assume
    # without camera_info (geometry.reference_camera).
    reference_focal: float | None = None

    @classmethod
    def from_card(cls, card: dict, point_stride: int = 4) -> OutputStyle:
        det = tuple(card["detection_classes"])
        seg = tuple(card["segmentation_classes"])
        return cls(det, seg, class_palette(len(seg)), detection_palette(det, seg),
                   int(point_stride), task_maps=task_maps(card["tasks"]),
                   reference_focal=card.get("depth_reference_focal"))


def task_maps(tasks: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    """(suffix, result field, encoding) of the map outputs ``tasks`` declare beyond the
    built-in ``OUTPUT_TYPES``; a kind this adapter cannot publish is a ValueError."""
    maps = []
    for task in get_tasks(tasks):
        for spec in task.outputs:
            if spec.suffix in OUTPUT_TYPES:
                continue
            if spec.kind not in MAP_ENCODINGS:
                raise ValueError(f"task {task.name!r} output {spec.suffix!r}: kind "
                                 f"{spec.kind!r} has no message; map kinds: "
                                 f"{', '.join(MAP_ENCODINGS)}")
            field = spec.field or task.result_fields[0]
            maps.append((spec.suffix, field, MAP_ENCODINGS[spec.kind]))
    return tuple(maps)


def output_types(style: OutputStyle) -> dict[str, str]:
    """Every output suffix -> message type: the built-in ones, then the tasks' maps."""
    return {**OUTPUT_TYPES, **{suffix: IMAGE for suffix, _, _ in style.task_maps}}


# ------------------------------------------------------------------------------- assemble
def assemble(result: Any, source_size: tuple[int, int], header: Any, camera_info: Any,
             style: OutputStyle, wanted: Collection[str],
             factory: MessageFactory) -> dict[str, Any]:
    """``{suffix: message}`` for the ``wanted`` suffixes of ``OUTPUT_TYPES`` that ``result``
    (a ``ServerResult``) can fill, in publishing order.

    ``source_size`` is the input image's (W, H) (``FeaturePacket.source_size``);
    ``camera_info`` the input's CameraInfo (K for the source image) or None / K unset: then
    the model's reference camera, the one depth assumes (``geometry.reference_camera``). Boxes
    in messages are in source pixels; each detection's depth is the median predicted depth in
    its box.
    """
    out: dict[str, Any] = {}
    depth, seg = result.depth, result.segmentation
    map_boxes = scale_boxes(result.boxes, result.output_scale)
    box_depths = [median_depth_in_box(depth, b) if depth is not None else 0.0
                  for b in map_boxes]
    src_intr = camera_intrinsics(None if camera_info is None else camera_info.k, *source_size,
                                 style.reference_focal, result.output_scale[1])
    if "detections" in wanted:
        out["detections"] = detection_array(factory, header, result.boxes, result.class_ids,
                                            result.scores, style.detection_classes,
                                            box_depths)
    if "detections/markers" in wanted:
        out["detections/markers"] = markers(factory, header, result, style, box_depths,
                                            src_intr)
    for suffix, field, encoding in style.task_maps:
        value = result.extra_fields.get(field)
        if suffix in wanted and value is not None:
            out[suffix] = image(factory, header, value, encoding)
    ref = depth if depth is not None else seg
    if ref is None:
        return out
    out_intr = src_intr.scaled(ref.shape[1] / src_intr.width, ref.shape[0] / src_intr.height)
    if "camera_info" in wanted:
        out["camera_info"] = camera_info_msg(factory, header, out_intr)
    if seg is not None:
        if "segmentation" in wanted:
            out["segmentation"] = image(factory, header, seg, "mono8")
        if "segmentation/color" in wanted:
            out["segmentation/color"] = image(
                factory, header, colorize_segmentation(seg, style.seg_palette), "rgb8")
    if depth is not None:
        if "depth" in wanted:
            out["depth"] = image(factory, header, depth, "32FC1")
        if "points" in wanted:
            out["points"] = point_cloud(factory, header, depth, seg, out_intr,
                                        style.seg_palette, style.point_stride)
    if "annotated" in wanted:
        view = annotate(seg, depth, map_boxes, result.class_ids, result.scores,
                        style.detection_classes, seg_palette=style.seg_palette,
                        det_palette=style.det_palette,
                        box_depths=box_depths if depth is not None else None)
        out["annotated"] = image(factory, header, view, "rgb8")
    return out


# ----------------------------------------------------------------------------- converters
def detection_array(factory: MessageFactory, header: Any, boxes: ArrayLike,
                    class_ids: ArrayLike, scores: ArrayLike, class_names: Sequence[str],
                    depths: ArrayLike | None = None) -> Any:
    """Detection2DArray from x1, y1, x2, y2 boxes; ``depths`` None = 0.0 (unknown)."""
    xyxy = np.asarray(boxes, np.float64).reshape(-1, 4)
    ids = np.asarray(class_ids, np.int64).reshape(-1)
    confidences = np.asarray(scores, np.float64).reshape(-1)
    box_depths = np.zeros(len(xyxy)) if depths is None else np.asarray(depths, np.float64)
    dets = []
    for box, cid, score, depth in zip(xyxy, ids, confidences, box_depths):
        cx, cy, sx, sy = box_to_center_size(box)
        dets.append(factory.make("mtl_split/msg/Detection2D", class_id=int(cid),
                                 class_name=_name(class_names, cid), score=float(score),
                                 center_x=cx, center_y=cy, size_x=sx, size_y=sy,
                                 depth=float(depth)))
    return factory.make(DETECTIONS, header=header, detections=dets)


def detection_arrays(msg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Detection2DArray as (boxes (K, 4) float32 x1 y1 x2 y2, class ids, scores)."""
    d = msg.detections
    boxes = np.array([center_size_to_box(x.center_x, x.center_y, x.size_x, x.size_y)
                      for x in d], np.float32).reshape(-1, 4)
    return (boxes, np.array([x.class_id for x in d], np.int64),
            np.array([x.score for x in d], np.float32))


def markers(factory: MessageFactory, header: Any, result: Any, style: OutputStyle,
            box_depths: Sequence[float], intrinsics: Intrinsics) -> Any:
    """A cube and a label per detection, placed at its predicted depth (camera optical frame).

    The first marker is DELETEALL so boxes of the previous frame never linger.
    """
    f = factory
    lifetime_s = style.marker_lifetime_s
    lifetime = f.make("builtin_interfaces/msg/Duration", sec=int(lifetime_s),
                      nanosec=int((lifetime_s % 1) * 1e9))
    out = [f.make("visualization_msgs/msg/Marker", header=header, action=_MARKER_DELETEALL,
                  pose=_pose(f, 0.0, 0.0, 0.0))]
    palette = style.det_palette
    for i, (box, cid, score, depth) in enumerate(zip(result.boxes, result.class_ids,
                                                    result.scores, box_depths)):
        if depth <= 0:
            continue
        center, size = box_to_3d(box, float(depth), intrinsics)
        r, g, b = (float(v) for v in palette[int(cid) % len(palette)] / 255.0)
        out.append(f.make(
            "visualization_msgs/msg/Marker", header=header, ns="detections", id=2 * i,
            type=_MARKER_CUBE, action=_MARKER_ADD, pose=_pose(f, *center),
            scale=f.make("geometry_msgs/msg/Vector3",
                         **dict(zip("xyz", (float(max(v, 1e-3)) for v in size)))),
            color=f.make("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=0.5), lifetime=lifetime))
        out.append(f.make(
            "visualization_msgs/msg/Marker", header=header, ns="labels", id=2 * i + 1,
            type=_MARKER_TEXT, action=_MARKER_ADD,
            text=f"{_name(style.detection_classes, cid)} {score:.2f} {depth:.1f}m",
            pose=_pose(f, center[0], center[1] - size[1] / 2 - 0.1, center[2]),
            scale=f.make("geometry_msgs/msg/Vector3", z=0.2),
            color=f.make("std_msgs/msg/ColorRGBA", r=1.0, g=1.0, b=1.0, a=1.0),
            lifetime=lifetime))
    return f.make("visualization_msgs/msg/MarkerArray", markers=out)


def _pose(f: MessageFactory, x: float, y: float, z: float) -> Any:
    # Orientation set explicitly: rosbags types do not know the .msg default w = 1.
    return f.make("geometry_msgs/msg/Pose",
                  position=f.make("geometry_msgs/msg/Point", x=float(x), y=float(y), z=float(z)),
                  orientation=f.make("geometry_msgs/msg/Quaternion", w=1.0))


def image(factory: MessageFactory, header: Any, pixels: np.ndarray, encoding: str) -> Any:
    """sensor_msgs/Image from an array (H, W[, C])."""
    return factory.make(IMAGE, header=header, **image_fields(pixels, encoding))


def camera_info_msg(factory: MessageFactory, header: Any, intrinsics: Intrinsics) -> Any:
    """sensor_msgs/CameraInfo of a distortion-free pinhole camera."""
    fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    return factory.make(
        CAMERA_INFO, header=header, width=int(intrinsics.width),
        height=int(intrinsics.height), distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array(intrinsics.k, np.float64), r=np.eye(3).reshape(-1),
        p=np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0], np.float64))


def point_cloud(factory: MessageFactory, header: Any, depth: np.ndarray,
                seg_ids: np.ndarray | None, intrinsics: Intrinsics, palette: np.ndarray,
                stride: int) -> Any:
    """XYZRGB points from the depth map, coloured by predicted class."""
    points, (rows, cols) = backproject(depth, intrinsics, stride=stride)
    if seg_ids is not None:
        colors = palette[np.clip(seg_ids[rows, cols], 0, len(palette) - 1)]
    else:
        colors = np.full((len(points), 3), 200, np.uint8)
    data = np.frombuffer(pack_xyzrgb(points, colors), np.uint8)
    fields = [factory.make("sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=c)
              for n, o, d, c in XYZRGB_FIELDS]
    return factory.make("sensor_msgs/msg/PointCloud2", header=header, height=1,
                        width=len(points), fields=fields, is_bigendian=False,
                        point_step=XYZRGB_POINT_STEP, row_step=XYZRGB_POINT_STEP * len(points),
                        data=data, is_dense=True)


def _name(class_names: Sequence[str], cid: int | np.integer) -> str:
    cid = int(cid)
    return class_names[cid] if 0 <= cid < len(class_names) else str(cid)
