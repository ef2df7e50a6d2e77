"""bench/soak/run.py for ~20 s: real edge, server and sim camera processes plus the hostile
sender; the result files have their structure and valid frames came through."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]
SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "soak" / "run.py"


def test_a_short_soak_writes_complete_results(tmp_path):
    out = tmp_path / "soak"
    r = subprocess.run([sys.executable, str(SCRIPT), "--minutes", "0.33", "--slice-minutes",
                        "0.1", "--out", str(out), "--label", "test run"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert {"command", "date_utc", "machine", "model", "frames", "hostile", "latency_slices",
            "rss", "diagnostics_at_end", "processes_alive_at_end"} <= results.keys()
    assert results["model"]["fingerprint"] and results["machine"]["cores"] >= 1
    assert all(results["processes_alive_at_end"].values()), results["processes_alive_at_end"]
    frames = results["frames"]
    # Valid frames came through, under a hostile sender of every kind.
    assert frames["sent"] > 50 and frames["with_detections"] > 0.5 * frames["sent"], frames
    assert frames["with_detections"] + frames["valid_lost"] == frames["processed_by_edge"]
    assert set(results["hostile"]["by_kind"]) == {"transform", "fingerprint", "shape",
                                                  "payload", "codec", "split_index"}
    assert results["hostile"]["sent"] > 50
    assert results["hostile"]["outputs_published_for_hostile"] == 0
    slices = results["latency_slices"]
    assert len(slices) >= 3 and slices[0]["frames"] > 0
    assert 0 < slices[0]["latency_ms_p50"] <= slices[0]["latency_ms_p99"]
    for node in ("edge", "server"):
        assert results["rss"][node]["samples"] >= 3 and results["rss"][node]["first_mb"] > 50
    assert any("server" in name and "rejected" in values
               for name, values in results["diagnostics_at_end"].items())
    md = (out / "results.md").read_text()
    assert "test run" in md and results["model"]["fingerprint"] in md and "p99" in md
    assert "Traceback" not in r.stderr
