"""Server results -> ROS messages: the one outputs path for the live server and for bags.

What is published comes from the tasks: each declares its outputs (``Task.outputs``:
``OutputSpec(suffix, kind, field, optional)``), and this module has one converter per kind
(``KINDS``). ``OutputStyle.from_card`` gathers the declarations of the tasks that run (plus
``FRAME_OUTPUTS``, the views of the frame as a whole); ``output_types``, ``publish_params``
(one ``publish_<suffix>`` switch per optional output) and ``assemble`` are generated from them.
So a new output topic is a change to its task, and a new kind of output one converter here.

``assemble(result, header, style, wanted, factory)`` returns ``{topic_suffix: message}`` for
the wanted outputs of one frame (``result``: a ``ServerResult``, which carries the source size
and camera); ``each_output`` gives them one by one as they are built. The server node publishes
each message as soon as it is built; ``mtl-split process`` writes the same
messages to a bag. Messages come from a ``msg_factory`` (rclpy types or rosbags types), so this
module imports no message package. A converter that raises costs its own output of that frame
only (``on_error``). ``latched_messages`` gives the outputs published once per topic (transient
local), e.g. ``label_info``.

Topic naming, one rule for live and bag: an edge in namespace ``NS`` reads ``NS/image`` or
``NS/image/compressed`` and publishes ``NS/mtl_split/features``; the server publishes the
outputs next to the features (``NS/mtl_split/detections`` ...). A bag's image topic maps the
same way: drop a trailing ``/compressed``, then the image's own name, so ``/cam/image_raw``
and ``/cam/image_raw/compressed`` both give ``/cam/mtl_split/...`` (``features_topic``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from mtl_split_core.geometry import (
    XYZRGB_FIELDS,
    XYZRGB_POINT_STEP,
    Intrinsics,
    box_to_3d,
    center_size_to_box,
    median_depth_in_box,
    reference_camera,
    scale_boxes,
)
from mtl_split_core.runtime.frame_views import ViewRequest, frame_point_cloud, map_camera
from mtl_split_core.tasks import DEFAULT_TASKS, OutputSpec, get_tasks
from mtl_split_core.viz import annotate, class_palette, colorize_segmentation, detection_palette
from mtl_split_ros.detections_cdr import detection_array_cdr
from mtl_split_ros.image_cdr import image_cdr
from mtl_split_ros.image_msg import image_fields
from mtl_split_ros.msg_factory import MessageFactory

FEATURES_NAME = "mtl_split/features"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DETECTIONS_2D = "vision_msgs/msg/Detection2DArray"
DETECTIONS_3D = "vision_msgs/msg/Detection3DArray"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
# Outputs of the frame as a whole (views over every task's result), after the tasks' own.
FRAME_OUTPUTS = (OutputSpec("camera_info", "map_camera_info"),
                 OutputSpec("annotated", "annotated_image", optional=True))
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


# ---------------------------------------------------------------------------- declarations
def declared_outputs(tasks: Iterable[str]) -> tuple[OutputSpec, ...]:
    """The outputs ``tasks`` declare, then ``FRAME_OUTPUTS``, each once (a suffix two tasks
    declare alike is one output), with ``field`` filled in (the task's first result field).
    A kind without a converter, or one suffix declared as two things, is a ValueError."""
    specs: dict[str, OutputSpec] = {}
    declared = [(task.name, dataclasses.replace(spec, field=spec.field
                                                or (task.result_fields or ("",))[0]))
                for task in get_tasks(tasks) for spec in task.outputs]
    for owner, spec in [*declared, *(("the frame", s) for s in FRAME_OUTPUTS)]:
        if spec.kind not in KINDS:
            raise ValueError(f"{owner} output {spec.suffix!r}: kind {spec.kind!r} has no "
                             f"converter; kinds: {', '.join(KINDS)}")
        if spec.suffix in specs and specs[spec.suffix].kind != spec.kind:
            raise ValueError(f"{owner} output {spec.suffix!r} ({spec.kind}) is already "
                             f"declared as {specs[spec.suffix].kind}")
        specs.setdefault(spec.suffix, spec)
    return tuple(specs.values())


def publish_param(suffix: str) -> str:
    """The switch of an optional output (``a/b`` -> ``publish_a_b``)."""
    return "publish_" + suffix.replace("/", "_")


# ---------------------------------------------------------------------------------- style
@dataclass(frozen=True)
class OutputStyle:
    """What a model card and the running tasks fix about the outputs: which there are, class
    names and their colours."""

    detection_classes: tuple[str, ...]
    segmentation_classes: tuple[str, ...]
    seg_palette: np.ndarray
    det_palette: np.ndarray
    point_stride: int = 4
    marker_lifetime_s: float = 1.0
    outputs: tuple[OutputSpec, ...] = ()
    # The card's depth_reference_focal (model-input pixels): the camera outputs assume
    # without camera_info (geometry.reference_camera).
    reference_focal: float | None = None

    @classmethod
    def from_card(cls, card: dict, point_stride: int = 4,
                  tasks: Sequence[str] | None = None) -> OutputStyle:
        """``tasks``: those that run (None = every task of the card)."""
        det = tuple(card["detection_classes"])
        seg = tuple(card["segmentation_classes"])
        return cls(det, seg, class_palette(len(seg)), detection_palette(det, seg),
                   int(point_stride),
                   outputs=declared_outputs(card["tasks"] if tasks is None else tasks),
                   reference_focal=card.get("depth_reference_focal"))


def output_types(style: OutputStyle) -> dict[str, str]:
    """Every output suffix -> message type, in publishing order."""
    return {spec.suffix: KINDS[spec.kind].msgtype for spec in style.outputs}


def latched(style: OutputStyle) -> set[str]:
    """The suffixes published once per topic with transient local durability."""
    return {spec.suffix for spec in style.outputs if KINDS[spec.kind].latched}


def view_request(style: OutputStyle, wanted: Collection[str]) -> ViewRequest:
    """What the server makes with the batch for a frame whose ``wanted`` outputs these are
    (runtime/frame_views.py): the coloured class maps and the point grid, only if wanted."""
    specs = [spec for spec in style.outputs if spec.suffix in wanted]
    return ViewRequest(
        colorize=frozenset(s.field for s in specs if s.kind == "class_color_image"),
        cloud_stride=style.point_stride if any(s.kind == "point_cloud" and s.field == "depth"
                                               for s in specs) else 0)


# ------------------------------------------------------------------------------- assemble
class FrameOutputs:
    """One frame's result with what several converters derive from it, each computed once
    and only when a wanted output needs it."""

    def __init__(self, result: Any, header: Any, style: OutputStyle, factory: MessageFactory):
        self.result, self.header, self.style, self.factory = result, header, style, factory
        self.fields: dict[str, Any] = result.as_dict()

    @cached_property
    def map_boxes(self) -> np.ndarray:
        """The boxes in output-map pixels."""
        return scale_boxes(self.result.boxes, self.result.output_scale)

    @cached_property
    def box_depths(self) -> np.ndarray:
        """Each detection's depth: the median predicted depth in its box (0 = unknown)."""
        depth = self.result.depth
        return np.array([median_depth_in_box(depth, b) if depth is not None else 0.0
                         for b in self.map_boxes], np.float64)

    @cached_property
    def camera(self) -> Intrinsics:
        """The source camera; without a camera_info, the model's reference camera (the one
        depth assumes, ``geometry.reference_camera``), so every 3D output agrees with depth."""
        if self.result.camera is not None:
            return self.result.camera
        width, height = self.result.source_size
        return reference_camera(width, height, self.style.reference_focal,
                                self.result.output_scale[1])

    @cached_property
    def reference_map(self) -> np.ndarray | None:
        """A map at output resolution (depth, else segmentation), None without one."""
        return self.result.depth if self.result.depth is not None else self.result.segmentation

    @cached_property
    def map_camera(self) -> Intrinsics | None:
        """The camera of the output maps (the source camera scaled to them)."""
        ref = self.reference_map
        return None if ref is None else map_camera(
            self.result.camera, self.result.source_size, ref.shape[:2],
            self.style.reference_focal, self.result.output_scale[1])


def assemble(result: Any, header: Any, style: OutputStyle, wanted: Collection[str],
             factory: MessageFactory,
             on_error: Callable[[str, Exception], None] | None = None,
             serialized: bool = False) -> dict[str, Any]:
    """``{suffix: message}`` for the ``wanted`` per-frame outputs of ``style`` that ``result``
    (a ``ServerResult``) can fill, in declaration order (``each_output``, gathered)."""
    return dict(each_output(result, header, style, wanted, factory, on_error, serialized))


def each_output(result: Any, header: Any, style: OutputStyle, wanted: Collection[str],
                factory: MessageFactory,
                on_error: Callable[[str, Exception], None] | None = None,
                serialized: bool = False) -> Iterator[tuple[str, Any]]:
    """``(suffix, message)`` for the ``wanted`` per-frame outputs of ``style`` that ``result``
    can fill, one at a time in declaration order: a publisher sends each as soon as it is
    built, so the small outputs declared first (detections) do not wait for the large images.
    Boxes in messages are in source pixels; each detection's depth is the median predicted
    depth in its box.

    ``on_error(suffix, exception)``: a converter raised; that output is left out of this frame
    (None: the exception propagates). ``serialized``: kinds that can give their message as
    CDR bytes (``Kind.serialized``; rclpy publishers send bytes as they are) do."""
    frame = FrameOutputs(result, header, style, factory)
    for spec in style.outputs:
        kind = KINDS[spec.kind]
        if spec.suffix not in wanted or kind.latched:
            continue
        try:
            build = kind.serialized if serialized and kind.serialized else kind.build
            message = build(frame, spec)
        except Exception as err:
            if on_error is None:
                raise
            on_error(spec.suffix, err)
            continue
        if message is not None:
            yield spec.suffix, message


def latched_messages(style: OutputStyle, header: Any, factory: MessageFactory
                     ) -> dict[str, Any]:
    """``{suffix: message}`` of the outputs published once per topic (``latched``)."""
    return {spec.suffix: KINDS[spec.kind].build(_Static(header, style, factory), spec)
            for spec in style.outputs if KINDS[spec.kind].latched}


@dataclass(frozen=True)
class _Static:
    """What a latched output is built from: no frame, the style alone."""

    header: Any
    style: OutputStyle
    factory: MessageFactory


# ----------------------------------------------------------------------------- converters
@dataclass(frozen=True)
class Kind:
    """A kind of output: its message type and its converter (None = nothing this frame)."""

    msgtype: str
    build: Callable[[Any, OutputSpec], Any]
    latched: bool = False  # published once per topic (transient local), not per frame
    # The same message as serialized CDR bytes (what a publisher sends as is), where building
    # the message object is the expensive part; ``assemble(..., serialized=True)``.
    serialized: Callable[[Any, OutputSpec], bytes | None] | None = None


def _image_kind(pixels_of: Callable[[FrameOutputs, OutputSpec], np.ndarray | None],
                encoding: str) -> Kind:
    """A sensor_msgs/Image output of the array ``pixels_of`` gives (None: nothing this frame),
    as a message or as its CDR bytes (image_cdr.py)."""
    def build(f: FrameOutputs, spec: OutputSpec) -> Any:
        pixels = pixels_of(f, spec)
        return None if pixels is None else image(f.factory, f.header, pixels, encoding)

    def serialized(f: FrameOutputs, spec: OutputSpec) -> bytes | None:
        pixels = pixels_of(f, spec)
        return None if pixels is None else image_cdr(f.header, pixels, encoding)
    return Kind(IMAGE, build, serialized=serialized)


def _field(f: FrameOutputs, spec: OutputSpec) -> np.ndarray | None:
    return f.fields.get(spec.field)


def _class_colors(f: FrameOutputs, spec: OutputSpec) -> np.ndarray | None:
    # Coloured with the batch on the server's device when requested (``view_request``);
    # the same table lookup here otherwise (a bag, a result made without the view).
    colors = f.result.colors.get(spec.field)
    if colors is None:
        ids = f.fields.get(spec.field)
        if ids is None:
            return None
        colors = colorize_segmentation(ids, f.style.seg_palette)
    return colors


def _points(f: FrameOutputs, spec: OutputSpec) -> Any:
    depth = f.fields.get(spec.field)
    if depth is None or f.map_camera is None:
        return None
    cloud = f.result.cloud
    if spec.field != "depth" or cloud is None or f.result.cloud_stride != f.style.point_stride:
        cloud = frame_point_cloud(depth, f.result.segmentation, f.map_camera,
                                  f.style.seg_palette, f.style.point_stride)
    return point_cloud(f.factory, f.header, cloud)


def _map_camera_info(f: FrameOutputs, spec: OutputSpec) -> Any:
    return None if f.map_camera is None else camera_info_msg(f.factory, f.header, f.map_camera)


def _annotated(f: FrameOutputs, spec: OutputSpec) -> np.ndarray | None:
    result = f.result
    if f.reference_map is None:
        return None
    return annotate(result.segmentation, result.depth, f.map_boxes, result.class_ids,
                    result.scores, f.style.detection_classes, seg_palette=f.style.seg_palette,
                    det_palette=f.style.det_palette,
                    box_depths=f.box_depths if result.depth is not None else None)


def _detections_2d(f: FrameOutputs, spec: OutputSpec) -> Any:
    r = f.result
    return detection_array(f.factory, f.header, r.boxes, r.class_ids, r.scores)


def _detections_2d_cdr(f: FrameOutputs, spec: OutputSpec) -> bytes:
    r = f.result
    return detection_array_cdr(f.header, r.boxes, r.class_ids, r.scores)


def _detections_3d(f: FrameOutputs, spec: OutputSpec) -> Any:
    r = f.result
    return detection_3d_array(f.factory, f.header, r.boxes, r.class_ids, r.scores,
                              f.box_depths, f.camera)


def _markers(f: FrameOutputs, spec: OutputSpec) -> Any:
    return markers(f.factory, f.header, f.result, f.style, f.box_depths, f.camera)


def _label_info(f: _Static, spec: OutputSpec) -> Any:
    return label_info(f.factory, f.header, f.style.detection_classes)


KINDS: dict[str, Kind] = {
    # Per-pixel maps any task may declare (a result field at output resolution).
    "class_image": _image_kind(_field, "mono8"),
    "mask_image": _image_kind(_field, "mono8"),
    "float_image": _image_kind(_field, "32FC1"),
    "rgb_image": _image_kind(_field, "rgb8"),
    # Views built from several fields.
    "class_color_image": _image_kind(_class_colors, "rgb8"),
    "point_cloud": Kind("sensor_msgs/msg/PointCloud2", _points),
    "detections_2d": Kind(DETECTIONS_2D, _detections_2d, serialized=_detections_2d_cdr),
    "detections_3d": Kind(DETECTIONS_3D, _detections_3d),
    "box_markers_3d": Kind("visualization_msgs/msg/MarkerArray", _markers),
    "label_info": Kind(LABEL_INFO, _label_info, latched=True),
    "map_camera_info": Kind(CAMERA_INFO, _map_camera_info),
    "annotated_image": _image_kind(_annotated, "rgb8"),
}


# The outputs of the default tasks (what a server with the default model publishes).
DEFAULT_OUTPUT_TYPES: dict[str, str] = {spec.suffix: KINDS[spec.kind].msgtype
                                        for spec in declared_outputs(DEFAULT_TASKS)}


def detection_array(factory: MessageFactory, header: Any, boxes: ArrayLike,
                    class_ids: ArrayLike, scores: ArrayLike) -> Any:
    """vision_msgs/Detection2DArray from x1, y1, x2, y2 boxes in source pixels: one
    hypothesis per detection (class id as text: the index into label_info's class map)."""
    xyxy = np.asarray(boxes, np.float64).reshape(-1, 4)
    centres, sizes = (xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]
    ids = np.asarray(class_ids, np.int64).reshape(-1).tolist()
    confidences = np.asarray(scores, np.float64).reshape(-1).tolist()
    f = factory
    # A 2D detection has no pose: one zero pose shared by every detection of the array (the
    # messages are only read), not five messages more per detection.
    unplaced = f.make("geometry_msgs/msg/PoseWithCovariance", pose=_pose(f, 0.0, 0.0, 0.0))
    dets = [f.make("vision_msgs/msg/Detection2D", header=header,
                   results=[_hypothesis(f, cid, score, unplaced)],
                   bbox=f.make("vision_msgs/msg/BoundingBox2D", center=f.make(
                       "vision_msgs/msg/Pose2D", position=f.make(
                           "vision_msgs/msg/Point2D", x=cx, y=cy)), size_x=sx, size_y=sy))
            for (cx, cy), (sx, sy), cid, score in zip(centres.tolist(), sizes.tolist(), ids,
                                                      confidences)]
    return f.make(DETECTIONS_2D, header=header, detections=dets)


def detection_3d_array(factory: MessageFactory, header: Any, boxes: ArrayLike,
                       class_ids: ArrayLike, scores: ArrayLike, depths: ArrayLike,
                       camera: Intrinsics) -> Any:
    """vision_msgs/Detection3DArray in the camera's optical frame: each box with a depth
    lifted to 3D (``geometry.box_to_3d``: centre at that depth, size from the 2D box)."""
    f = factory
    dets = []
    for box, cid, score, depth in zip(np.asarray(boxes, np.float64).reshape(-1, 4),
                                      np.asarray(class_ids).reshape(-1).tolist(),
                                      np.asarray(scores, np.float64).reshape(-1).tolist(),
                                      np.asarray(depths, np.float64).reshape(-1).tolist()):
        if depth <= 0:
            continue
        center, size = box_to_3d(box, depth, camera)
        pose = _pose(f, *center)
        dets.append(f.make("vision_msgs/msg/Detection3D", header=header,
                           results=[_hypothesis(f, cid, score, f.make(
                               "geometry_msgs/msg/PoseWithCovariance", pose=pose))],
                           bbox=f.make("vision_msgs/msg/BoundingBox3D", center=pose,
                                       size=_vector(f, size))))
    return f.make(DETECTIONS_3D, header=header, detections=dets)


def label_info(factory: MessageFactory, header: Any, class_names: Sequence[str]) -> Any:
    """vision_msgs/LabelInfo: the class ids of the detections and their names."""
    return factory.make(LABEL_INFO, header=header, class_map=[
        factory.make("vision_msgs/msg/VisionClass", class_id=i, class_name=name)
        for i, name in enumerate(class_names)])


def detection_arrays(msg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A vision_msgs/Detection2DArray as (boxes (K, 4) float32 x1 y1 x2 y2, class ids,
    scores): the first hypothesis of each detection."""
    d = msg.detections
    boxes = np.array([center_size_to_box(x.bbox.center.position.x, x.bbox.center.position.y,
                                         x.bbox.size_x, x.bbox.size_y) for x in d],
                     np.float32).reshape(-1, 4)
    return (boxes, np.array([int(x.results[0].hypothesis.class_id) for x in d], np.int64),
            np.array([x.results[0].hypothesis.score for x in d], np.float32))


def _hypothesis(f: MessageFactory, class_id: int, score: float, pose: Any) -> Any:
    """``pose``: a geometry_msgs/PoseWithCovariance."""
    return f.make("vision_msgs/msg/ObjectHypothesisWithPose",
                  hypothesis=f.make("vision_msgs/msg/ObjectHypothesis",
                                    class_id=str(int(class_id)), score=float(score)),
                  pose=pose)


def markers(factory: MessageFactory, header: Any, result: Any, style: OutputStyle,
            box_depths: ArrayLike, intrinsics: Intrinsics) -> Any:
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
                                                    result.scores,
                                                    np.asarray(box_depths).reshape(-1))):
        if depth <= 0:
            continue
        center, size = box_to_3d(box, float(depth), intrinsics)
        r, g, b = (float(v) for v in palette[int(cid) % len(palette)] / 255.0)
        out.append(f.make(
            "visualization_msgs/msg/Marker", header=header, ns="detections", id=2 * i,
            type=_MARKER_CUBE, action=_MARKER_ADD, pose=_pose(f, *center),
            scale=_vector(f, size), color=f.make("std_msgs/msg/ColorRGBA", r=r, g=g, b=b,
                                                 a=0.5), lifetime=lifetime))
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


def _vector(f: MessageFactory, size: Iterable[float]) -> Any:
    """A box size (metres; at least 1 mm per side, what RViz can draw)."""
    return f.make("geometry_msgs/msg/Vector3",
                  **dict(zip("xyz", (float(max(v, 1e-3)) for v in size))))


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


def point_cloud(factory: MessageFactory, header: Any, cloud: np.ndarray) -> Any:
    """sensor_msgs/PointCloud2 (XYZRGB) from one (M, 4) float32 buffer of x, y, z and colour
    bits (``frame_views.valid_points``): its bytes are the message's data."""
    points = np.ascontiguousarray(cloud, np.float32).reshape(-1, 4)
    fields = [factory.make("sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=c)
              for n, o, d, c in XYZRGB_FIELDS]
    return factory.make("sensor_msgs/msg/PointCloud2", header=header, height=1,
                        width=len(points), fields=fields, is_bigendian=False,
                        point_step=XYZRGB_POINT_STEP, row_step=XYZRGB_POINT_STEP * len(points),
                        data=points.view(np.uint8).reshape(-1), is_dense=True)


def _name(class_names: Sequence[str], cid: int | np.integer) -> str:
    cid = int(cid)
    return class_names[cid] if 0 <= cid < len(class_names) else str(cid)
