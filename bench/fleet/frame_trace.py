"""A node process with a per-frame latency trace (bench only: nothing of it is in the nodes).

``python bench/fleet/frame_trace.py edge|server OUT.json --ros-args ...`` runs the edge or
server node as its executable would, with the functions on a frame's critical path wrapped so
that each records ``(camera stamp ns, event, time.time_ns())`` in memory: the wall clock, the
clock the camera stamps with and the probe reads (one host). The events are written to
OUT.json at exit. ``timeline`` turns the events of the camera, both nodes and the probe into
per-hop times (bench/fleet/pipeline.py ``--trace``).

The wrappers cost a few microseconds per call; they perturb the run a little, the same for
every tree traced (compare trees traced alike).
"""

from __future__ import annotations

import atexit
import functools
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

EVENTS: list[tuple[int, str, int]] = []
_LOCAL = threading.local()  # .stamps: the frames the current thread works on

# The critical path of one frame, in order (events a tree lacks are left out). Each hop is
# named by the event it ends at.
ORDER = (
    ("camera_published", "camera: stamp -> published"),
    ("edge_receive", "DDS camera -> edge callback (incl. deserialise)"),
    ("edge_taken", "edge: callback -> worker takes"),
    ("edge_image_decoded", "edge: image message -> array"),
    ("edge_camera_fitted", "edge: camera_info fitted to the image"),
    ("edge_planned", "edge: link control (the frame's plan)"),
    ("edge_runner_start", "edge: plan applied -> edge runner starts"),
    ("edge_graph_launched", "edge: image to the device + CUDA graph launch"),
    ("edge_letterboxed", "edge: upload + letterbox"),
    ("edge_model", "edge: model (edge half)"),
    ("edge_encoded", "edge: encode (quantise + zstd; after a graph: its wait, one copy, zstd)"),
    ("edge_msg_built", "edge: build features message"),
    ("edge_publish_start", "edge: sign, link bookkeeping"),
    ("edge_published", "edge: publish features"),
    ("server_receive", "DDS features -> server callback"),
    ("server_taken", "server: callback -> worker takes"),
    ("server_admitted", "server: read + check + decode"),
    ("server_batch_start", "server: gather -> batch starts"),
    ("server_model", "server: model (server half)"),
    ("server_post_device", "server: post-process (device part)"),
    ("server_post_done", "server: host copy + results"),
    ("server_handed_over", "server: hand-over to the publisher"),
    ("server_deliver", "server: publisher thread wakes"),
    ("pub:detections", "server: build + publish detections"),
    ("probe:detections", "DDS detections -> probe"),
)
# Events of the edge's CUDA graph path only (on the CPU the eager hops around it happen
# instead; on CUDA those are absent).
CUDA_ONLY = frozenset({"edge_graph_launched"})


def mark(stamp: int | None, event: str) -> None:
    if stamp is not None:
        EVENTS.append((stamp, event, time.time_ns()))


def _stamp(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _tag_stamp(tag: Any) -> int:
    return int(tag.sec) * 1_000_000_000 + int(tag.nanosec)


def _current() -> list[int]:
    return getattr(_LOCAL, "stamps", [])


def _wrap(owner: Any, name: str, before: Callable[..., Any] | None = None,
          after: Callable[..., Any] | None = None) -> None:
    """Replace ``owner.name`` by a function calling ``before(*args)`` and ``after(result,
    *args)`` around it (``after`` also when it raises). Absent in this tree (an older one):
    left alone, its event missing from the timeline."""
    original = getattr(owner, name, None)
    if original is None:
        return

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            before(*args)
        result = None
        try:
            result = original(*args, **kwargs)
            return result
        finally:
            if after is not None:
                after(result, *args)

    setattr(owner, name, wrapper)


def _on_current(event: str) -> Callable[..., None]:
    def record(*_: Any) -> None:
        for s in _current():
            mark(s, event)
    return record


def _set_current(stamps: list[int]) -> None:
    _LOCAL.stamps = stamps


def patch_publish() -> None:
    """Every publish on a thread working on frames marks ``pub:<last topic name part>``."""
    from rclpy.publisher import Publisher

    def after(_: Any, pub: Any, *__: Any) -> None:
        _on_current("pub:" + pub.topic_name.rsplit("/", 1)[-1])()
    _wrap(Publisher, "publish", after=after)


def arrive_before(*_: Any) -> None:
    """A subscription callback starts: its time, for the event its stamp is read for."""
    _LOCAL.arrived = time.time_ns()


def patch_edge() -> Any:
    import mtl_split_core.runtime.cuda_graph as CG
    import mtl_split_core.runtime.edge as E
    import mtl_split_edge.node as N

    # The callback's start (a message or its serialized bytes), under the stamp the camera
    # gaps read next.
    _wrap(N.EdgeNode, "_on_image", before=arrive_before)
    _wrap(N.EdgeNode, "_count_camera_gaps", before=lambda self, msg: EVENTS.append(
        (_stamp(msg.header), "edge_receive", _LOCAL.arrived)))

    def process_before(self: Any, msg: Any) -> None:
        _set_current([_stamp(msg.header)])
        _on_current("edge_taken")()
    _wrap(N.EdgeNode, "_process", before=process_before,
          after=lambda *_: (_on_current("edge_done")(), _set_current([])))
    _wrap(N, "image_to_rgb", after=_on_current("edge_image_decoded"))
    _wrap(N.CameraInfoFitter, "for_image", after=_on_current("edge_camera_fitted"))
    _wrap(N.LinkAdaptation, "frame", after=_on_current("edge_planned"))
    _wrap(E.EdgeRunner, "__call__", before=_on_current("edge_runner_start"))
    _wrap(E, "letterbox_tensor", after=_on_current("edge_letterboxed"))
    _wrap(E.EdgeRunner, "_prefix", after=_on_current("edge_model"))
    _wrap(E, "encode", after=_on_current("edge_encoded"))
    _wrap(E.TemporalEncoder, "encode", after=_on_current("edge_encoded"))
    # On CUDA one graph holds the letterbox, the model and a zstd codec's device half.
    _wrap(CG.CudaGraphEdge, "__call__", after=_on_current("edge_graph_launched"))
    _wrap(CG, "finish_encode", after=_on_current("edge_encoded"))
    _wrap(N, "packet_to_msg", after=_on_current("edge_msg_built"))
    _wrap(N.EdgeNode, "_send", before=_on_current("edge_publish_start"),
          after=_on_current("edge_published"))
    return N.EdgeNode


def patch_server() -> Any:
    import mtl_split_core.runtime.scheduler as SC
    import mtl_split_core.runtime.server as R
    import mtl_split_server.node as S

    def envelope_after(tag: Any, *_: Any) -> None:
        if tag is not None:
            EVENTS.append((_tag_stamp(tag), "server_receive", _LOCAL.arrived))
    _wrap(S.ServerNode, "arrive", before=arrive_before)
    _wrap(S, "read_envelope", after=envelope_after)

    def ready_before(self: Any, stream: Any, frames: Any, pending: Any) -> None:
        _set_current([_tag_stamp(pending.newest.tag)])
        _on_current("server_taken")()
    _wrap(SC.BatchScheduler, "_ready", before=ready_before,
          after=lambda *_: (_on_current("server_admitted")(), _set_current([])))

    def run_before(self: Any, taken: Any, started: float) -> None:
        _set_current([_tag_stamp(f.tag) for _, f in taken])
        _on_current("server_batch_start")()
    _wrap(SC.BatchScheduler, "run", before=run_before,
          after=lambda *_: (_on_current("server_handed_over")(), _set_current([])))
    _wrap(R.ServerRunner, "_network", after=_on_current("server_model"))
    _wrap(R._Batch, "finish", before=_on_current("server_post_device"),
          after=_on_current("server_post_done"))

    def deliver_before(self: Any, robot: Any, done: Any) -> None:
        _set_current([_tag_stamp(done.frame.tag)])
        _on_current("server_deliver")()
    _wrap(S.ServerNode, "_deliver", before=deliver_before,
          after=lambda *_: (_on_current("server_delivered")(), _set_current([])))
    return S.ServerNode


def timeline(events: list[tuple[int, str, int]], window: tuple[int, int]
             ) -> dict[str, Any]:
    """Per hop of ``ORDER``: p50 / p90 / p99 ms from the previous event present, over the
    frames whose detections reached the probe within ``window`` (time_ns); and each event's
    p50 ms after the camera stamp."""
    by_stamp: dict[int, dict[str, int]] = {}
    for stamp, event, t in events:
        by_stamp.setdefault(stamp, {}).setdefault(event, t)  # first occurrence
    names = [e for e, _ in ORDER]
    hops: dict[str, list[float]] = {}
    since: dict[str, list[float]] = {}
    frames = 0
    for stamp, ev in by_stamp.items():
        if not window[0] <= ev.get("probe:detections", -1) < window[1]:
            continue
        frames += 1
        prev = stamp
        for e in names:
            if e in ev:
                hops.setdefault(e, []).append((ev[e] - prev) / 1e6)
                since.setdefault(e, []).append((ev[e] - stamp) / 1e6)
                prev = ev[e]
    label = dict(ORDER)
    return {"frames": frames,
            "hops": [{"event": e, "hop": label[e], **_percentiles(hops[e])}
                     for e in names if e in hops],
            "since_stamp_p50": {e: _percentiles(since[e])["p50"] for e in names if e in since}}


def _percentiles(values: list[float]) -> dict[str, float]:
    a = np.array(values)
    return {k: round(float(np.percentile(a, q)), 3) for k, q in
            (("p50", 50), ("p90", 90), ("p99", 99))}


def main() -> int:
    node, out = sys.argv[1], Path(sys.argv[2])
    sys.argv = [sys.argv[0], *sys.argv[3:]]
    atexit.register(lambda: out.write_text(json.dumps(EVENTS)))
    from mtl_split_ros.node_main import run_node
    patch_publish()
    make = patch_edge() if node == "edge" else patch_server()
    return run_node(make)


if __name__ == "__main__":
    sys.exit(main())
