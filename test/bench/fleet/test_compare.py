"""bench/fleet/compare.py: one table from several trees' fleet and pipeline results."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "fleet"


def _run(n, fps, cpu):
    return {"robots": n, "delivered_fps_total": fps, "delivered_fps_min": fps / n,
            "e2e_ms_p50": 4.0, "e2e_ms_p99": 9.0, "server_ms_p50": 3.0, "server_ms_p99": 8.0,
            "batch_size_mean": 2.0, "cpu_pct": {"server": cpu, "robots_0": 20.0},
            "gpu_util_pct": {"0": 16.0}}


def test_rows_per_tree_and_robot_count_with_cpu_per_frame_and_thread_split(tmp_path):
    for side, runs in (("a", [_run(16, 480.0, 108.0)]), ("b", [_run(16, 400.0, 100.0)])):
        (tmp_path / side / "logs" / "n16").mkdir(parents=True)
        (tmp_path / side / "results.json").write_text(json.dumps({"runs": runs}))
    (tmp_path / "a" / "logs" / "n16" / "pyspy_server_gil.txt").write_text(
        "thread (1): server-worker;x (a.py:1) 1\nthread (2): MainThread;y (a.py:2) 3\n")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "pipeline.json").write_text(json.dumps({
        "delivered_fps": 30.0, "e2e_ms_p50": 4.9, "e2e_ms_p99": 7.5,
        "edge_diagnostics": {"edge_ms_p50": 1.4, "bytes_per_frame_p50": "1868.000"},
        "server_diagnostics": {"receive_to_publish_ms_p50": 2.1},
        "cpu_pct": {"server": 15.0, "edge": 20.0}}))
    (tmp_path / "local").mkdir()  # pipeline.py --no-server: the edge's probe frames' bytes
    (tmp_path / "local" / "pipeline.json").write_text(json.dumps({
        "meta": {"server": "none: the edge serves locally"},
        "delivered_fps": 30.0, "e2e_ms_p50": 6.0, "e2e_ms_p99": 9.0,
        "edge_diagnostics": {"edge_ms_p50": 1.5, "bytes_per_frame_p50": "1868.000"},
        "server_diagnostics": {}, "cpu_pct": {"edge": 40.0}}))
    out = tmp_path / "speed.md"
    r = subprocess.run([sys.executable, str(BENCH / "compare.py"), "--out", str(out),
                        f"after={tmp_path / 'a'}", f"before={tmp_path / 'b'}",
                        "--pipeline", f"after={tmp_path / 'p'}",
                        "--pipeline", f"before={tmp_path / 'missing'}",
                        "--pipeline", f"local={tmp_path / 'local'}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    # 108% CPU over 480 frames/s = 2.25 ms per frame; GIL: worker 1 of 4 samples.
    assert "| after | 16 | 480 | 30.0 | 4 / 9 | 3 / 8 | 2.0 | 108 | 2.25 | 25 / 0 / 75 / 0 |" \
        in text
    assert "| before | 16 | 400 | 25.0 |" in text and "| 2.50 | - |" in text
    assert "| after | 30.0 | 4.9 / 7.5 | 1.4 | 2.1 | 1868.000 | server 15, edge 20 |" in text
    # No server: no server time, and the probe frames' bytes are not the link's cost.
    assert "| local | 30.0 | 6.0 / 9.0 | 1.5 | - | - | edge 40 |" in text
    assert "Not measured: before pipeline" in text
