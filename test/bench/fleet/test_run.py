"""bench/fleet/run.py and pipeline.py, short: real server (and edge) processes over DDS; the
result files have their structure and frames came through for every robot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]
BENCH = Path(__file__).resolve().parents[3] / "bench" / "fleet"


@pytest.mark.parametrize("devices, servers", [("cpu", {"server"}),
                                              ("cpu,cpu", {"server_0", "server_1"})])
def test_two_robots_into_one_server_or_one_each(tmp_path, devices, servers):
    out = tmp_path / "fleet"
    r = subprocess.run([sys.executable, str(BENCH / "run.py"), "--robots", "2", "--rate", "5",
                        "--seconds", "4", "--warmup", "1", "--stream-frames", "3",
                        "--per-process", "1", "--devices", devices, "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["recording"]["frames"] == 3 and results["meta"]["model"]
    (run,) = results["runs"]
    assert set(run["delivered_fps"]) == {"r1", "r2"}
    assert all(fps > 0 for fps in run["delivered_fps"].values()), run
    assert 0 < run["e2e_ms_p50"] <= run["e2e_ms_p99"]
    assert run["server_ms_p50"] is not None and run["batch_size_mean"] >= 1
    assert set(run["cpu_pct"]) == servers | {"robots_0", "robots_1"}
    assert all(run["cpu_pct"][s] > 0 for s in servers)
    # Each server's main thread (receiving) is a share of its process.
    assert set(run["main_thread_cpu_pct"]) == servers
    assert all(0 < run["main_thread_cpu_pct"][s] <= run["cpu_pct"][s] for s in servers)
    assert 0 < run["offered_fps_total"] <= 2 * 5 * 1.5  # what the robots sent in the window
    md = (out / "results.md").read_text()
    assert results["meta"]["model"] in md and "| 2 |" in md
    assert (out / "results.png").stat().st_size > 0
    assert "Traceback" not in r.stderr


def test_bad_arguments_exit_2(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH / "run.py"), "--robots", "two", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "expected comma-separated integers" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, str(BENCH / "run.py"), "--server-param", "max_batch=2",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "expected NAME:=VALUE" in r.stderr
    assert "Traceback" not in r.stderr


def test_one_robot_end_to_end(tmp_path):
    out = tmp_path / "pipeline"
    r = subprocess.run([sys.executable, str(BENCH / "pipeline.py"), "--rate", "5", "--seconds",
                        "4", "--warmup", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    result = json.loads((out / "pipeline.json").read_text())
    assert result["delivered_fps"] > 0 and 0 < result["e2e_ms_p50"] <= result["e2e_ms_p99"]
    assert set(result["cpu_pct"]) == {"server", "edge", "probe", "camera"}
    assert result["edge_diagnostics"] and result["server_diagnostics"]
    by_output = result["e2e_ms_by_output"]
    assert set(by_output) == {"detections", "segmentation", "depth"}
    assert by_output["detections"]["p50"] == result["e2e_ms_p50"]
    assert all(0 < v["p50"] <= v["p99"] for v in by_output.values())


def test_one_robot_without_a_server_is_served_by_its_edge(tmp_path):
    """--no-server: the local-inference baseline; every output comes from the edge itself."""
    r = subprocess.run([sys.executable, str(BENCH / "pipeline.py"), "--no-server", "--trace",
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not with --no-server" in r.stderr
    assert "Traceback" not in r.stderr
    out = tmp_path / "local"
    r = subprocess.run([sys.executable, str(BENCH / "pipeline.py"), "--no-server", "--rate", "5",
                        "--seconds", "4", "--warmup", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    result = json.loads((out / "pipeline.json").read_text())
    assert result["delivered_fps"] > 0 and 0 < result["e2e_ms_p50"] <= result["e2e_ms_p99"]
    assert set(result["cpu_pct"]) == {"edge", "probe", "camera"}
    assert result["edge_diagnostics"]["link_mode"] == "local"
    assert set(result["e2e_ms_by_output"]) == {"detections", "segmentation", "depth"}


def test_overload_runs_each_tree_at_each_rate(tmp_path):
    """bench/fleet/overload.py, short: two trees (both this one), one rate; a row each with the
    offered and delivered rates and the receiving thread's cost."""
    out = tmp_path / "overload"
    r = subprocess.run([sys.executable, str(BENCH / "overload.py"), "--tree", "a=",
                        "--tree", "b=", "--robots", "1", "--rates", "5", "--seconds", "3",
                        "--warmup", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [(run["tree"], run["rate"]) for run in results["runs"]] == [("a", 5.0), ("b", 5.0)]
    for run in results["runs"]:
        assert run["offered"] > 0 and run["delivered"] > 0 and run["receive_cpu"] > 0, run
    assert len(results["meta"]["fingerprint"]) == 16
    assert "| 5 | a |" in (out / "results.md").read_text()
