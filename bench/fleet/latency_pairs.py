"""One robot's latency, two trees, alternating: ``pipeline.py --trace`` runs of a before and an
after tree (the same camera frames, model and DDS profile), ``--pairs`` pairs, which tree goes
first alternating from pair to pair. Per tree: the median over its runs of the end-to-end p50
and p99 (camera stamp -> detections at the probe) and of each hop's p50
(bench/fleet/frame_trace.py); after / before as ratios. Writes ``pairs.json`` and ``pairs.md``
to ``--out`` (each run's own results under ``runs/``).

    python bench/fleet/latency_pairs.py --before /tmp/before --model /tmp/tiny --pairs 5 \\
        --out bench/results/one_robot_latency_cpu

The nodes of a tree are its Python packages (``PYTHONPATH`` first), this tree's pipeline.py and
frame_trace.py drive both (an older tree's functions are wrapped where they exist).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def run_once(tree: Path, out: Path, args: argparse.Namespace, domain_id: int) -> dict:
    """One traced pipeline run of ``tree``'s nodes; its pipeline.json."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, str(HERE / "pipeline.py"), "--trace", "--device", args.device,
           "--precision", args.precision, "--seconds", str(args.seconds), "--warmup",
           str(args.warmup), "--domain-id", str(domain_id), "--out", str(out),
           *(["--model", args.model] if args.model else []),
           *(["--dds-profile", str(args.dds_profile)] if args.dds_profile else [])]
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                             timeout=args.seconds + args.warmup + 180)
    if rc != 0:
        raise RuntimeError(f"pipeline run of {tree} failed ({rc}); see {log}")
    return json.loads((out / "pipeline.json").read_text())


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Per tree the medians over its runs; ratios after / before."""
    out: dict[str, dict] = {}
    for label, results in runs.items():
        hops: dict[str, list[float]] = {}
        names: dict[str, str] = {}
        for r in results:
            for h in r["trace"]["hops"]:
                hops.setdefault(h["event"], []).append(h["p50"])
                names[h["event"]] = h["hop"]
        out[label] = {
            "runs": len(results),
            "e2e_ms_p50": statistics.median(r["e2e_ms_p50"] for r in results),
            "e2e_ms_p99": statistics.median(r["e2e_ms_p99"] for r in results),
            "e2e_ms_p50_each": [r["e2e_ms_p50"] for r in results],
            "e2e_ms_p99_each": [r["e2e_ms_p99"] for r in results],
            "delivered_fps": statistics.median(r["delivered_fps"] for r in results),
            "hop_ms_p50": {e: round(statistics.median(v), 3) for e, v in hops.items()},
            "hop_names": names,
        }
    return out


def markdown(summary: dict, meta: dict) -> str:
    a, b = summary["after"], summary["before"]

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f}" if y else "-"
    lines = [f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}; date {meta['date']}; load average {meta['load']}  ",
             f"Model: {meta['model']}; edge and server on {meta['device']} {meta['precision']}; "
             f"DDS profile {meta['dds_profile']}; {meta['pairs']} pairs x {meta['seconds']:g} s "
             f"(after {meta['warmup']:g} s warm-up), alternating; before = {meta['before']}, "
             f"after = {meta['after']}; camera {meta['camera']}",
             "",
             "| | before | after | after / before |", "|---|---:|---:|---:|",
             f"| e2e p50 ms (median of runs) | {b['e2e_ms_p50']:.2f} | {a['e2e_ms_p50']:.2f} | "
             f"{ratio(a['e2e_ms_p50'], b['e2e_ms_p50'])} |",
             f"| e2e p99 ms (median of runs) | {b['e2e_ms_p99']:.2f} | {a['e2e_ms_p99']:.2f} | "
             f"{ratio(a['e2e_ms_p99'], b['e2e_ms_p99'])} |",
             f"| delivered fps | {b['delivered_fps']:.1f} | {a['delivered_fps']:.1f} | |",
             "",
             "e2e p50 ms per run, before: " + ", ".join(f"{v:.1f}" for v in b["e2e_ms_p50_each"])
             + "; after: " + ", ".join(f"{v:.1f}" for v in a["e2e_ms_p50_each"]) + "  ",
             "e2e p99 ms per run, before: " + ", ".join(f"{v:.1f}" for v in b["e2e_ms_p99_each"])
             + "; after: " + ", ".join(f"{v:.1f}" for v in a["e2e_ms_p99_each"]),
             "",
             "| hop (median over runs of its p50) | before ms | after ms | after / before |",
             "|---|---:|---:|---:|"]
    events = list(b["hop_ms_p50"]) + [e for e in a["hop_ms_p50"] if e not in b["hop_ms_p50"]]
    names = {**b["hop_names"], **a["hop_names"]}
    for e in events:
        x, y = a["hop_ms_p50"].get(e), b["hop_ms_p50"].get(e)
        cells = [f"{y:.3f}" if y is not None else "-", f"{x:.3f}" if x is not None else "-",
                 ratio(x, y) if x is not None and y is not None else "-"]
        lines.append(f"| {names[e]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the before tree (a checkout)")
    ap.add_argument("--after", type=Path, default=ROOT)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--model", default="", help="model folder; '' = the CI's tiny model "
                    "(test/support/ros_nodes.tiny_model), written to --out/tiny_model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--dds-profile", type=Path, default=ROOT / "config" / "fastdds.xml",
                    help="Fast DDS profile of every process ('' = Fast DDS defaults)")
    ap.add_argument("--domain-id", type=int, default=80)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                    "one_robot_latency_cpu")
    args = ap.parse_args()
    if not (args.before / "mtl_split_edge").is_dir() or args.pairs < 1:
        print("latency_pairs: --before must be a checkout of this project; --pairs >= 1",
              file=sys.stderr)
        return 2
    if not args.model:
        sys.path.insert(0, str(ROOT / "test"))
        from support.ros_nodes import tiny_model
        path = args.out / "tiny_model"
        args.model = str(path) if (path / "model.json").exists() else tiny_model(path)
    load = [os.getloadavg()[0]]
    trees = {"after": args.after.resolve(), "before": args.before.resolve()}
    runs: dict[str, list[dict]] = {"after": [], "before": []}
    for i in range(args.pairs):
        order = ("after", "before") if i % 2 == 0 else ("before", "after")
        for k, label in enumerate(order):
            start = time.time()
            result = run_once(trees[label], args.out / "runs" / f"{label}_{i}", args,
                              args.domain_id + 2 * i + k)
            runs[label].append(result)
            print(f"pair {i} {label}: e2e p50 {result['e2e_ms_p50']} p99 "
                  f"{result['e2e_ms_p99']} ms ({time.time() - start:.0f} s)", flush=True)
    load.append(os.getloadavg()[0])
    first = runs["after"][0]["meta"]
    meta = {"command": " ".join(["python bench/fleet/latency_pairs.py", *sys.argv[1:]]),
            "machine": f"{platform.node()}: {os.cpu_count()} CPUs, {_cpu_model()}",
            "date": datetime.date.today().isoformat(),
            "load": f"{load[0]:.1f} at start, {load[1]:.1f} at end", "model": first["model"],
            "camera": first["camera"],
            "device": args.device, "precision": args.precision,
            "dds_profile": str(args.dds_profile) if args.dds_profile else "Fast DDS defaults",
            "pairs": args.pairs, "seconds": args.seconds, "warmup": args.warmup,
            "before": _describe(trees["before"]), "after": _describe(trees["after"])}
    summary = summarise(runs)
    (args.out / "pairs.json").write_text(json.dumps({"meta": meta, **summary}, indent=2))
    md = markdown(summary, meta)
    (args.out / "pairs.md").write_text(md)
    print(md)
    return 0


def _cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _describe(tree: Path) -> str:
    """The tree's commit (and whether it has changes), or its path."""
    try:
        commit = subprocess.check_output(["git", "-C", str(tree), "rev-parse", "--short",
                                          "HEAD"], text=True).strip()
        dirty = subprocess.call(["git", "-C", str(tree), "diff", "--quiet", "HEAD"]) != 0
    except (OSError, subprocess.CalledProcessError):
        return str(tree)
    return commit + (" + changes" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
