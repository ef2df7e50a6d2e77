"""One table from fleet runs of several trees (bench/gpu/run_speed.sh: before and after, one
card): per side and robot count the delivered frames/s, latency, the server's CPU per frame
and how its GIL and CPU samples split over its threads (py-spy, bench/fleet/stacks.py), plus
the one-robot pipeline runs (camera -> edge -> server) when given.

    python bench/fleet/compare.py --out speed.md after=RUN_DIR,RUN_DIR before=RUN_DIR \\
        --pipeline after=PIPELINE_DIR --pipeline before=PIPELINE_DIR

RUN_DIR: a bench/fleet/run.py --out folder (results.json, logs/n<N>/pyspy_server_*.txt).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stacks import thread_shares  # noqa: E402

SPLIT = ("worker", "publisher", "executor", "other")


def _split(path: Path) -> str:
    shares = thread_shares(str(path)) if path.is_file() else {}
    return " / ".join(f"{shares.get(t, 0):.0f}" for t in SPLIT) if shares else "-"


def _fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def fleet_rows(side: str, folder: Path) -> list[tuple[int, str]]:
    """(robots, table row) per run in ``folder``'s results.json."""
    results = json.loads((folder / "results.json").read_text())
    rows = []
    for r in results["runs"]:
        n, fps = r["robots"], r["delivered_fps_total"]
        server_cpu = sum(v for k, v in r["cpu_pct"].items() if k.startswith("server"))
        per_frame = 10 * server_cpu / fps if fps else None  # CPU ms per delivered frame
        logs = folder / "logs" / f"n{n}"
        gpu = ", ".join(f"{v:.0f}" for v in (r["gpu_util_pct"] or {}).values()) or "-"
        rows.append((n, f"| {side} | {n} | {fps:.0f} | {r['delivered_fps_min']:.1f} | "
                        f"{_fmt(r['e2e_ms_p50'])} / {_fmt(r['e2e_ms_p99'])} | "
                        f"{_fmt(r['server_ms_p50'])} / {_fmt(r['server_ms_p99'])} | "
                        f"{_fmt(r['batch_size_mean'], 1)} | {server_cpu:.0f} | "
                        f"{_fmt(per_frame, 2)} | {_split(logs / 'pyspy_server_gil.txt')} | "
                        f"{_split(logs / 'pyspy_server_threads.txt')} | {gpu} |"))
    return rows


def pipeline_row(side: str, folder: Path) -> str:
    p = json.loads((folder / "pipeline.json").read_text())
    server = p.get("server_diagnostics", {})
    edge = p.get("edge_diagnostics", {})
    # pipeline.py --no-server: no link, so the edge's (probe) bytes are not a cost
    local = p.get("meta", {}).get("server", "").startswith("none")
    return (f"| {side} | {p['delivered_fps']:.1f} | {_fmt(p['e2e_ms_p50'], 1)} / "
            f"{_fmt(p['e2e_ms_p99'], 1)} | {edge.get('edge_ms_p50', '-')} | "
            f"{server.get('receive_to_publish_ms_p50', '-')} | "
            f"{'-' if local else edge.get('bytes_per_frame_p50', '-')} | "
            + ", ".join(f"{k} {v:.0f}" for k, v in p["cpu_pct"].items()) + " |")


def labelled(values: list[str]) -> list[tuple[str, list[Path]]]:
    out = []
    for value in values:
        side, sep, paths = value.partition("=")
        if not sep or not side or not paths:
            raise SystemExit(f"compare: {value!r}: expected SIDE=DIR[,DIR...]")
        out.append((side, [Path(p) for p in paths.split(",") if p]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", help="SIDE=RUN_DIR[,RUN_DIR...]")
    ap.add_argument("--pipeline", action="append", default=[], help="SIDE=PIPELINE_DIR")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows: list[tuple[int, int, str]] = []
    missing = []
    for order, (side, folders) in enumerate(labelled(args.runs)):
        for folder in folders:
            try:
                rows += [(n, order, row) for n, row in fleet_rows(side, folder)]
            except (OSError, ValueError, KeyError) as err:
                missing.append(f"{side} {folder}: {err}")
    lines = ["| tree | robots | total fps | fps per robot (min) | e2e p50 / p99 ms | server "
             "p50 / p99 ms | batch | server CPU % | server CPU ms per frame | GIL % "
             "worker / publisher / executor / other | CPU samples % (same threads) | GPU % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"] if args.runs else []
    lines += [row for _, _, row in sorted(rows, key=lambda r: r[:2])]
    if args.pipeline:
        lines += ["", "One robot end to end (camera 640x480 -> edge -> server, "
                  "bench/fleet/pipeline.py):", "",
                  "| tree | delivered fps | e2e p50 / p99 ms | edge ms p50 | server ms p50 | "
                  "bytes/frame p50 | CPU % |", "|---|---:|---:|---:|---:|---:|---|"]
        for side, folders in labelled(args.pipeline):
            for folder in folders:
                try:
                    lines.append(pipeline_row(side, folder))
                except (OSError, ValueError, KeyError) as err:
                    missing.append(f"{side} pipeline {folder}: {err}")
    lines += [""] + [f"Not measured: {m}  " for m in missing] if missing else []
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
