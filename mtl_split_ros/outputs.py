"""Server results -> ROS messages (detections, markers, images, camera_info, point cloud)."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from visualization_msgs.msg import Marker, MarkerArray

from mtl_split.msg import Detection2D, Detection2DArray
from mtl_split_core.geometry import XYZRGB_FIELDS, Intrinsics, backproject, box_to_3d, pack_xyzrgb
from mtl_split_core.runtime.server import ServerResult
from mtl_split_ros.image_msg import fill_image, to_uint8_array


def source_intrinsics(camera_info, source_size) -> Intrinsics:
    """The camera's intrinsics from the features' camera_info, or a 60° guess without one."""
    w, h = source_size
    k = np.asarray(camera_info.k, dtype=np.float64) if camera_info is not None else np.zeros(9)
    if k.size == 9 and k[0] > 0 and k[4] > 0:
        return Intrinsics.from_camera_info_k(k, w, h)
    return Intrinsics.default_for(w, h)


def detections_msg(header, result: ServerResult, class_names, box_depths) -> Detection2DArray:
    arr = Detection2DArray(header=header)
    for box, cid, score, depth in zip(result.boxes, result.class_ids, result.scores, box_depths):
        x1, y1, x2, y2 = (float(v) for v in box)
        arr.detections.append(Detection2D(
            class_id=int(cid), class_name=_name(class_names, cid), score=float(score),
            center_x=(x1 + x2) / 2, center_y=(y1 + y2) / 2, size_x=x2 - x1, size_y=y2 - y1,
            depth=float(depth)))
    return arr


def markers_msg(header, result: ServerResult, class_names, box_depths, intrinsics, palette,
                lifetime_s: float = 1.0) -> MarkerArray:
    """A cube and a label per detection, placed at its predicted depth (camera optical frame).

    The first marker is DELETEALL so boxes of the previous frame never linger.
    """
    arr = MarkerArray()
    arr.markers.append(Marker(header=header, action=Marker.DELETEALL))
    for i, (box, cid, score, depth) in enumerate(zip(result.boxes, result.class_ids,
                                                    result.scores, box_depths)):
        if depth <= 0:
            continue
        center, size = box_to_3d(box, float(depth), intrinsics)
        color = palette[int(cid) % len(palette)] / 255.0
        cube = Marker(header=header, ns="detections", id=2 * i, type=Marker.CUBE,
                      action=Marker.ADD)
        cube.pose.position = Point(x=float(center[0]), y=float(center[1]), z=float(center[2]))
        cube.pose.orientation.w = 1.0
        cube.scale.x, cube.scale.y, cube.scale.z = (float(max(v, 1e-3)) for v in size)
        cube.color.r, cube.color.g, cube.color.b, cube.color.a = (*map(float, color), 0.5)
        cube.lifetime.sec = int(lifetime_s)
        cube.lifetime.nanosec = int((lifetime_s % 1) * 1e9)
        text = Marker(header=header, ns="labels", id=2 * i + 1, type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, text=f"{_name(class_names, cid)} {score:.2f} "
                      f"{depth:.1f}m")
        text.pose.position = Point(x=float(center[0]),
                                   y=float(center[1] - size[1] / 2 - 0.1),
                                   z=float(center[2]))
        text.pose.orientation.w = 1.0
        text.scale.z = 0.2
        text.color.r = text.color.g = text.color.b = text.color.a = 1.0
        text.lifetime = cube.lifetime
        arr.markers.append(text)
    return arr


def image_msg(header, pixels: np.ndarray, encoding: str) -> Image:
    return fill_image(Image(header=header), pixels, encoding)


def camera_info_msg(header, intrinsics: Intrinsics) -> CameraInfo:
    info = CameraInfo(header=header, width=int(intrinsics.width), height=int(intrinsics.height))
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, 0.0, intrinsics.fy, intrinsics.cy, 0.0,
              0.0, 0.0, 1.0, 0.0]
    return info


def point_cloud_msg(header, depth, seg_ids, intrinsics, palette, stride: int) -> PointCloud2:
    """XYZRGB points from the depth map, coloured by predicted class."""
    points, (rows, cols) = backproject(depth, intrinsics, stride=stride)
    if seg_ids is not None:
        colors = palette[np.clip(seg_ids[rows, cols], 0, len(palette) - 1)]
    else:
        colors = np.full((len(points), 3), 200, np.uint8)
    data = pack_xyzrgb(points, colors)
    cloud = PointCloud2(header=header, height=1, width=len(points), is_bigendian=False,
                        is_dense=True)
    cloud.fields = [PointField(name=n, offset=o, datatype=d, count=c)
                    for n, o, d, c in XYZRGB_FIELDS]
    cloud.point_step = 16
    cloud.row_step = 16 * len(points)
    cloud.data = to_uint8_array(data)
    return cloud


def _name(class_names, cid) -> str:
    cid = int(cid)
    return class_names[cid] if 0 <= cid < len(class_names) else str(cid)
