"""Summarise a server's py-spy raw stacks (bench/fleet/run.py --py-spy): the share of samples per
server thread, then the functions with the most samples on top of the stack (self) and anywhere
in it (inclusive).

    python bench/fleet/stacks.py logs/n16/pyspy_server_gil.txt --top 25
"""

from __future__ import annotations

import argparse
import collections
import sys

# Server threads: by the thread's name (py-spy --threads puts "thread (id): name" first), else
# by a frame only they run (the executor is the main thread; before and after the scheduler
# moved to the core, issue 25).
THREAD_NAMES = {"server-worker": "worker", "server-publisher": "publisher",
                "MainThread": "executor"}
THREADS = (("worker", ("ServerNode._work ", "BatchScheduler.work ")),
           ("publisher", ("ServerNode._publish_step ", "BatchScheduler.publish ")),
           ("executor", ("run_node ",)))


def thread_of(frames: list[str]) -> str:
    if frames and frames[0].startswith("thread ("):
        return THREAD_NAMES.get(frames[0].partition("): ")[2].strip(), "other")
    for name, markers in THREADS:
        if any(f.startswith(markers) for f in frames):
            return name
    return "other"


def read_stacks(path: str) -> tuple[int, collections.Counter[str], collections.Counter[str],
                                    collections.Counter[str]]:
    """(samples, samples per thread, per top frame (self), per frame anywhere (inclusive))."""
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit():
                continue
            n, frames = int(count), stack.split(";")
            total += n
            threads[thread_of(frames)] += n
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    return total, threads, own, inclusive


def thread_shares(path: str) -> dict[str, float]:
    """Share (%) of ``path``'s samples per server thread (empty without samples)."""
    total, threads, _, _ = read_stacks(path)
    return {name: round(100 * n / total, 1) for name, n in threads.most_common()} if total \
        else {}


def summarise(path: str, top: int) -> str:
    total, threads, own, inclusive = read_stacks(path)
    if not total:
        return f"{path}: no samples\n"
    lines = [f"{path}: {total} samples", "threads:"]
    lines += [f"  {name:10s} {100 * n / total:5.1f}%" for name, n in threads.most_common()]
    lines.append("self:")
    lines += [f"  {100 * n / total:5.1f}%  {frame[:150]}" for frame, n in own.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {frame[:150]}"
              for frame, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stacks", help="py-spy record --format raw output")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    try:
        sys.stdout.write(summarise(args.stacks, args.top))
    except OSError as err:
        print(f"stacks: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
