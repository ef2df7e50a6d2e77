"""bench/fleet/stacks.py: thread shares and self/inclusive counts of py-spy raw stacks."""

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "fleet_stacks", Path(__file__).resolve().parents[3] / "bench" / "fleet" / "stacks.py")
stacks = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(stacks)

RAW = "".join(line + "\n" for line in [
    "Thread._bootstrap (threading.py:1);SupervisedWorker._run (watchdog.py:59);"
    "ServerNode._work (node.py:1);decode (codec.py:2) 3",
    "<module> (server_node:7);run_node (node_main.py:67);Executor.spin_once (executors.py:9) 5",
    "Thread._bootstrap (threading.py:1);ServerNode._publish_step (node.py:2);"
    "Publisher.publish (publisher.py:72) 2"])


def test_threads_self_and_inclusive_shares(tmp_path):
    path = tmp_path / "raw.txt"
    path.write_text(RAW + "garbage line without a count\n")
    out = stacks.summarise(str(path), top=3)
    assert "10 samples" in out
    assert "  executor    50.0%" in out and "  worker      30.0%" in out
    assert "  publisher   20.0%" in out
    # decode is on top of 3 of 10 samples; Thread._bootstrap is in 5 of 10 stacks.
    assert " 30.0%  decode (codec.py:2)" in out.split("inclusive:")[0]
    assert " 50.0%  Thread._bootstrap (threading.py:1)" in out.split("inclusive:")[1]


def test_an_empty_file_says_so(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    assert "no samples" in stacks.summarise(str(path), top=3)


def test_threads_by_name_and_by_the_scheduler_frames(tmp_path):
    """py-spy --threads puts the thread's name first; without it the scheduler's frames
    (issue 25: the worker and publisher loops moved into BatchScheduler) tell them apart."""
    path = tmp_path / "raw.txt"
    path.write_text(
        "thread (1): server-worker;Thread.run (threading.py:1);x (a.py:1) 4\n"
        "thread (2): server-publisher;Thread.run (threading.py:1);y (a.py:2) 2\n"
        "thread (3): MainThread;<module> (server_node:8);z (a.py:3) 1\n"
        "thread (4): torchscript-trace;Thread.run (threading.py:1) 1\n"
        "Thread.run (threading.py:1);BatchScheduler.work (scheduler.py:1);w (a.py:4) 1\n"
        "Thread.run (threading.py:1);BatchScheduler.publish (scheduler.py:2);p (a.py:5) 1\n")
    assert stacks.thread_shares(str(path)) == {"worker": 50.0, "publisher": 30.0,
                                               "executor": 10.0, "other": 10.0}
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert stacks.thread_shares(str(empty)) == {}
