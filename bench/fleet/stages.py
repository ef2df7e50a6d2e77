"""Per-stage CPU and GIL time per frame of the server and the edge, from py-spy's raw stacks
(``bench/fleet/pipeline.py --py-spy``: ``logs/pyspy_{server,edge}_{threads,gil}.txt``).

Each sample is given to the first stage (in the order below) one of whose functions is on its
stack: so "publish outputs" is the publish calls and what runs under them but not the message
building, which is its own stage. ``threads`` files hold every busy thread's samples (CPU
time); ``gil`` files only the GIL holder's (time no other Python thread of the process can
run). py-spy's sample counts are not a clock (on a loaded host it misses samples, more in one
run than another), so a stage's CPU ms per frame is its share of the process's samples times
the process's own CPU ms per frame over the same window (/proc, ``pipeline.json``), and the
GIL column is the share (%) of the GIL holder's samples.

    python bench/fleet/stages.py after=OUT_DIR before=OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (stage, function names): a frame "Name (file:line)" matches a name it starts with + " (".
SERVER_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("publish feedback (LinkFeedback)", ("Robot._publish_feedback",)),
    ("build output messages", ("assemble", "each_output")),
    ("publish outputs", ("ServerNode._publish",)),
    ("post-process + host copy", ("_Batch.postprocess_device", "_Batch.finish")),
    ("model (server half)", ("ServerRunner._network",)),
    ("decode packet (zstd, dequantise)", ("BatchScheduler.admit", "ServerRunner.admit")),
    ("check message fields", ("msg_to_packet", "features_auth.verify", "verify")),
    ("read message bytes (features_cdr)", ("read_features", "read_envelope",
                                           "deserialize_features")),
    ("diagnostics", ("ServerNode._publish_diagnostics",)),
    ("receive: deserialise message", ("<msg>",)),
    ("scheduler + threads (wait, hand-over)", ("BatchScheduler.work", "BatchScheduler.publish",
                                               "SupervisedWorker._run")),
    ("executor (wait, dispatch)", ("run_node",)),
)
EDGE_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("publish features", ("EdgeNode._send",)),
    ("build features message", ("packet_to_msg",)),
    ("CUDA graph: image to the device + launch", ("CudaGraphEdge.__call__",)),
    ("letterbox + upload", ("letterbox_tensor",)),
    ("encode (quantise + zstd)", ("encode", "TemporalEncoder.encode", "CudaGraphEdge.encode")),
    ("model (edge half)", ("EdgeRunner._prefix",)),
    ("upload + rest of the edge runner", ("EdgeRunner.__call__",)),
    ("decode image message", ("image_to_rgb",)),
    ("read image bytes (image_cdr)", ("read_image",)),
    ("image callback (stamp gaps, slot)", ("EdgeNode._on_image",)),
    ("feedback callback", ("EdgeNode._on_feedback",)),
    ("camera_info fit", ("CameraInfoFitter.for_image",)),
    ("link control (plan)", ("LinkAdaptation.frame", "LinkAdaptation.edge_time")),
    ("rest of the frame", ("EdgeNode._process",)),
    ("diagnostics", ("EdgeNode._publish_diagnostics",)),
    ("receive: take + deserialise", ("Executor._take_subscription", "<msg>")),
    ("worker thread (wait)", ("SupervisedWorker._run",)),
    ("executor (wait, dispatch)", ("SingleThreadedExecutor", "EventsExecutor", "run_node")),
)
STAGES = {"server": SERVER_STAGES, "edge": EDGE_STAGES}


def _matches(frame: str, name: str) -> bool:
    if name == "<msg>":  # a generated message class (rclpy converting a received message)
        return "/msg/_" in frame
    return frame.startswith(name + " (") or frame.startswith(name + ".<locals>")


def stage_of(frames: list[str], stages: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    for stage, names in stages:
        if any(_matches(f, n) for f in frames for n in names):
            return stage
    return "other"


def stage_samples(path: Path, stages: tuple[tuple[str, tuple[str, ...]], ...]
                  ) -> dict[str, int]:
    """Samples per stage of one raw py-spy file (``stack count`` lines)."""
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        stage = stage_of(stack.split(";"), stages)
        out[stage] = out.get(stage, 0) + int(count)
    return out


def breakdown(run: Path) -> dict:
    """{node: {stage: {"cpu_ms": per frame, "gil_pct": share of GIL samples}}} of one
    pipeline run."""
    result = json.loads((run / "pipeline.json").read_text())
    out: dict[str, dict[str, dict[str, float]]] = {}
    for node, stages in STAGES.items():
        fps, cpu_pct = result["delivered_fps"], result["cpu_pct"].get(node)
        cpu_ms = cpu_pct * 10.0 / fps if fps and cpu_pct is not None else None
        table: dict[str, dict[str, float]] = {}
        for kind, key, scale in (("threads", "cpu_ms", cpu_ms), ("gil", "gil_pct", 100.0)):
            path = run / "logs" / f"pyspy_{node}_{kind}.txt"
            if not path.exists() or scale is None:
                continue
            samples = stage_samples(path, stages)
            total = sum(samples.values())
            for stage, n in samples.items():
                table.setdefault(stage, {})[key] = round(scale * n / total, 3)
        order = [s for s, _ in stages] + ["other"]
        out[node] = {s: table[s] for s in order if s in table}
        out[node]["total"] = {"cpu_ms": round(cpu_ms, 3) if cpu_ms is not None else 0.0,
                              "gil_pct": 100.0}
    return out


def markdown(columns: dict[str, dict], node: str) -> str:
    """One table: a row per stage of ``node``, two columns (CPU ms/frame, GIL %) per run."""
    names = list(columns)
    rows = [f"| {node} stage | " + " | ".join(f"{n}: CPU ms per frame | {n}: GIL %"
                                              for n in names) + " |",
            "|---|" + "---:|---:|" * len(names)]
    for stage in [s for s, _ in STAGES[node]] + ["other", "total"]:
        if not any(stage in columns[n].get(node, {}) for n in names):
            continue
        cells = []
        for n in names:
            v = columns[n].get(node, {}).get(stage, {})
            cells.append(f"{v.get('cpu_ms', 0.0):.3f} | {v.get('gil_pct', 0.0):.1f}")
        label = "**total** (/proc)" if stage == "total" else stage
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=DIR of pipeline.py --py-spy runs (or DIR)")
    args = ap.parse_args()
    try:
        columns = {}
        for spec in args.runs:
            label, _, path = spec.rpartition("=")
            columns[label or Path(path).name] = breakdown(Path(path))
    except (OSError, ValueError, KeyError) as err:
        print(f"stages: {err}", file=sys.stderr)
        return 2
    sys.stdout.write("\n".join(markdown(columns, node) for node in STAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
