"""Goodput under overload: one server process, offered 1x, 2x, 4x ... what it can serve, for two
or more code trees in one run (issue #25/#26: above its capacity a server must keep serving at
its capacity, not collapse).

For each per-robot rate in ``--rates`` and each tree (the order alternates from one rate to
the next), ``bench/fleet/run.py`` runs one server and ``--robots`` replaying robots at that
rate with the tree's packages first on PYTHONPATH (one shared colcon install: the messages).
Reported per run: frames/s the robots sent (offered) and got back (delivered, detections
messages), delivered / offered, min fps per robot, e2e p50 / p99, server CPU %, frames
dropped unrun, and the server's main thread (its executor: what receiving costs) in CPU % and
CPU microseconds per offered frame. Writes ``results.json`` and ``results.md`` to ``--out``
(each run's own results below it; logs and the tiny model in ``--out``/logs/).

    python bench/fleet/overload.py --tree before=/tmp/before --tree after= --robots 8 \\
        --rates 15,30,60,120 --seconds 20 --out bench/results/overload_cpu [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def model_path(args: argparse.Namespace) -> str:
    """``--model``, or the CI's tiny model (test/support/ros_nodes.tiny_model) written to the
    output folder: a network cheap on the CPU, so the per-message work is what limits."""
    if args.model:
        return args.model
    sys.path.insert(0, str(ROOT / "test"))
    from support.ros_nodes import tiny_model
    path = args.out / "logs" / "tiny_model"
    return str(path) if (path / "model.json").exists() else tiny_model(path)


def fingerprint(model: str) -> str:
    from mtl_split_core.runtime.model_files import read_model_card_param
    return str(read_model_card_param(model)["fingerprint"])


def run_one(tree: str, path: str, rate: float, model: str, args: argparse.Namespace,
            repeat: int = 0) -> dict:
    out = args.out / (f"{tree}_rate{rate:g}" + (f"_{repeat}" if repeat else ""))
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")])
    argv = [sys.executable, str(HERE / "run.py"), "--robots", str(args.robots),
            "--rate", f"{rate:g}", "--seconds", f"{args.seconds:g}",
            "--warmup", f"{args.warmup:g}", "--model", model, "--out", str(out),
            "--domain-id", str(args.domain_id), "--per-process", str(args.per_process),
            "--start-timeout", "60"]
    if args.py_spy:
        argv += ["--py-spy", args.py_spy]
    print(f"{tree} rate {rate:g} ...", flush=True)
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=open(args.out / "logs" / f"{out.name}.log", "w"))
    r = json.loads((out / "results.json").read_text())["runs"][0]
    gil = gil_ms_per_frame(out / "logs" / f"n{args.robots}" / "pyspy_server_gil.txt",
                           r["delivered_fps_total"] * args.seconds) if args.py_spy else None
    return {"tree": tree, "rate": rate, "repeat": repeat, "gil_ms_per_frame": gil,
            "offered": r["offered_fps_total"],
            "delivered": r["delivered_fps_total"], "fps_min": r["delivered_fps_min"],
            "e2e_p50": r["e2e_ms_p50"], "e2e_p99": r["e2e_ms_p99"],
            "server_cpu": r["cpu_pct"].get("server"), "drops": r["drops"],
            "receive_cpu": r["main_thread_cpu_pct"].get("server"),
            "load": r["load_average_1min"]}


PY_SPY_HZ = 200  # run.py's py-spy sampling rate
THREADS = {"server-worker": "worker", "server-publisher": "publisher", "MainThread": "receiving"}


def gil_ms_per_frame(gil: Path, frames: float) -> dict[str, float] | None:
    """Milliseconds each server thread held the GIL per delivered frame, from py-spy's GIL
    holder samples (``--gil``: one per 1/PY_SPY_HZ s in which that thread held it; a loaded
    host drops some, so compare runs of one session). None without the file or frames."""
    if not gil.exists() or frames <= 0:
        return None
    samples = dict.fromkeys(THREADS.values(), 0)
    for line in gil.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        name = stack.split(";", 1)[0].partition("): ")[2]
        if count.isdigit() and name in THREADS:
            samples[THREADS[name]] += int(count)
    return {k: round(1e3 * v / PY_SPY_HZ / frames, 3) for k, v in samples.items()}


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [f"Command: `{meta['command']}`", "", f"Machine: {meta['machine']}; {meta['date']}; "
             f"model {meta['model']} (fingerprint {meta['fingerprint']}); {meta['robots']} "
             f"robots; trees: " + ", ".join(f"{k} = {v or 'this tree'}"
                                            for k, v in meta["trees"].items()), "",
             "| rate per robot | tree | offered fps | delivered fps | delivered / offered | "
             "fps per robot (min) | e2e p50 / p99 ms | server CPU % | receiving thread CPU % | "
             "receiving CPU us per offered frame | delivered per server CPU-second | "
             "server CPU ms per delivered frame | dropped unrun (total) | host load |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["runs"]:
        share = r["delivered"] / r["offered"] if r["offered"] else 0.0
        per_cpu = 100 * r["delivered"] / r["server_cpu"] if r["server_cpu"] else 0.0
        ms_per_frame = 1e3 / per_cpu if per_cpu else 0.0
        receive_us = (1e4 * r["receive_cpu"] / r["offered"]
                      if r["offered"] and r["receive_cpu"] is not None else 0.0)
        lines.append(f"| {r['rate']:g} | {r['tree']} | {r['offered']:.0f} | {r['delivered']:.0f} "
                     f"| {share:.2f} | {r['fps_min']:.1f} | {r['e2e_p50']:.0f} / "
                     f"{r['e2e_p99']:.0f} | {r['server_cpu']} | {r['receive_cpu']} | "
                     f"{receive_us:.0f} | {per_cpu:.0f} | {ms_per_frame:.2f} | "
                     f"{r['drops']:.0f} | {r['load']} |")
    gil = [r for r in results["runs"] if r.get("gil_ms_per_frame")]
    if gil:
        lines += ["", "GIL held per delivered frame (py-spy `--gil`, ms; receiving = the "
                  "executor, whose waits py-spy partly counts as held):", "",
                  "| rate per robot | tree | repeat | worker | publisher | worker + publisher | "
                  "receiving |", "|---:|---|---:|---:|---:|---:|---:|"]
        for r in gil:
            g = r["gil_ms_per_frame"]
            lines.append(f"| {r['rate']:g} | {r['tree']} | {r.get('repeat', 0)} | "
                         f"{g['worker']:.3f} | {g['publisher']:.3f} | "
                         f"{g['worker'] + g['publisher']:.3f} | {g['receiving']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", required=True, metavar="NAME=PATH",
                    help="a code tree (PATH '' = this one); repeat for each")
    ap.add_argument("--rates", default="15,30,60,120", help="fps per robot, comma-separated")
    ap.add_argument("--robots", type=int, default=8)
    ap.add_argument("--per-process", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=4.0)
    ap.add_argument("--model", default="", help="model folder; '' = the CI's tiny model")
    ap.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", 77)))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "overload_cpu")
    ap.add_argument("--py-spy", default="", metavar="PATH",
                    help="py-spy executable: profile each server over its window (run.py "
                    "--py-spy; the raw stacks in each run's logs/)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs of every rate and tree (the order alternates each time)")
    args = ap.parse_args(argv)
    trees = dict(t.partition("=")[::2] for t in args.tree)
    try:
        rates = [float(v) for v in args.rates.split(",") if v]
    except ValueError:
        ap.error(f"--rates {args.rates!r}: expected comma-separated numbers")
    if not rates or min(rates) <= 0 or args.robots < 1 or args.repeats < 1 \
            or any(not k for k in trees):
        ap.error("--rates, --robots and --repeats must be positive, every --tree NAME=PATH "
                 "named")
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    model = model_path(args)
    results: dict = {"meta": {
        "command": " ".join(["python bench/fleet/overload.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes"),
        "model": "tiny (CI)" if not args.model else args.model,
        "fingerprint": fingerprint(model), "robots": args.robots, "trees": trees},
        "runs": []}
    names = list(trees)
    turn = 0
    for repeat in range(args.repeats):
        for rate in rates:
            for tree in (names if turn % 2 == 0 else names[::-1]):
                results["runs"].append(run_one(tree, trees[tree], rate, model, args, repeat))
                (args.out / "results.json").write_text(json.dumps(results, indent=2))
            turn += 1
    (args.out / "results.md").write_text(markdown(results))
    print("\n" + markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
