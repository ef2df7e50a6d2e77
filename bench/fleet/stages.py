"""Per-stage CPU and GIL time per frame of the server and the edge, from py-spy's raw stacks
(``bench/fleet/pipeline.py --py-spy``: ``logs/pyspy_{server,edge}_{threads,gil}.txt``).

Each sample is given to the first stage (in the order below) one of whose functions is on its
stack: so "publish outputs" is the publish calls and what runs under them but not the message
building, which is its own stage. ``threads`` files hold every busy thread's samples (CPU
time); ``gil`` files only the GIL holder's (time no other Python thread of the process can
run). Milliseconds per frame = samples / rate / frames delivered in the window.

    python bench/fleet/stages.py OUT_DIR_OF_PIPELINE [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (stage, function names): a frame "Name (file:line)" matches a name it starts with + " (".
SERVER_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("publish feedback (LinkFeedback)", ("Robot._publish_feedback",)),
    ("build output messages", ("assemble",)),
    ("publish outputs", ("ServerNode._publish",)),
    ("post-process + host copy", ("_Batch.postprocess_device", "_Batch.finish")),
    ("model (server half)", ("ServerRunner._network",)),
    ("decode packet (zstd, dequantise)", ("BatchScheduler.admit",)),
    ("check message fields", ("msg_to_packet", "features_auth.verify", "verify")),
    ("diagnostics", ("ServerNode._publish_diagnostics",)),
    ("receive: deserialise message", ("<msg>",)),
    ("scheduler + threads (wait, hand-over)", ("BatchScheduler.work", "BatchScheduler.publish",
                                               "SupervisedWorker._run")),
    ("executor (wait, dispatch)", ("run_node",)),
)
EDGE_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("publish features", ("EdgeNode._send",)),
    ("build features message", ("packet_to_msg",)),
    ("letterbox + upload", ("letterbox_tensor",)),
    ("encode (quantise + zstd)", ("encode", "TemporalEncoder.encode")),
    ("model (edge half)", ("EdgeRunner._prefix",)),
    ("decode image message", ("image_to_rgb",)),
    ("image callback (stamp gaps, slot)", ("EdgeNode._on_image",)),
    ("feedback callback", ("EdgeNode._on_feedback",)),
    ("link control + rest of the frame", ("EdgeNode._process",)),
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


def breakdown(run: Path, rate: float = 200.0) -> dict:
    """{node: {stage: {"cpu_ms": per frame, "gil_ms": per frame}}} of one pipeline run."""
    result = json.loads((run / "pipeline.json").read_text())
    frames = result["delivered_fps"] * result["seconds"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for node, stages in STAGES.items():
        table: dict[str, dict[str, float]] = {}
        for kind, key in (("threads", "cpu_ms"), ("gil", "gil_ms")):
            path = run / "logs" / f"pyspy_{node}_{kind}.txt"
            if not path.exists() or not frames:
                continue
            for stage, n in stage_samples(path, stages).items():
                table.setdefault(stage, {})[key] = round(n / rate * 1e3 / frames, 3)
        order = [s for s, _ in stages] + ["other"]
        out[node] = {s: table[s] for s in order if s in table}
    return out


def markdown(columns: dict[str, dict], node: str) -> str:
    """One table: a row per stage of ``node``, two columns (CPU, GIL ms/frame) per run."""
    names = list(columns)
    stages = [s for s, _ in STAGES[node]] + ["other"]
    rows = [f"| {node} stage | " + " | ".join(f"{n} CPU ms | {n} GIL ms" for n in names)
            + " |", "|---|" + "---:|---:|" * len(names)]
    totals = {n: [0.0, 0.0] for n in names}
    for stage in stages:
        cells = []
        if not any(stage in columns[n].get(node, {}) for n in names):
            continue
        for n in names:
            v = columns[n].get(node, {}).get(stage, {})
            cpu, gil = v.get("cpu_ms", 0.0), v.get("gil_ms", 0.0)
            totals[n][0] += cpu
            totals[n][1] += gil
            cells.append(f"{cpu:.3f} | {gil:.3f}")
        rows.append(f"| {stage} | " + " | ".join(cells) + " |")
    rows.append("| **total** | " + " | ".join(f"**{c:.3f}** | **{g:.3f}**"
                                             for c, g in totals.values()) + " |")
    return "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=DIR of pipeline.py --py-spy runs (or DIR)")
    ap.add_argument("--rate", type=float, default=200.0, help="py-spy's sampling rate (Hz)")
    args = ap.parse_args()
    try:
        columns = {}
        for spec in args.runs:
            label, _, path = spec.rpartition("=")
            columns[label or Path(path).name] = breakdown(Path(path), args.rate)
    except (OSError, ValueError, KeyError) as err:
        print(f"stages: {err}", file=sys.stderr)
        return 2
    sys.stdout.write("\n".join(markdown(columns, node) for node in STAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
