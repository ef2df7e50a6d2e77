"""The link benchmark end to end: both pipelines over a real shaped link, real nodes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from link import PREFIX, namespaces
from run import PIPELINES, pipeline_processes

ROOT = Path(__file__).resolve().parents[3]


def test_what_crosses_the_link_is_features_for_split_and_jpeg_for_upload(tmp_path):
    split = pipeline_processes("split", tmp_path / "f.npz", 30, "reliable", "",
                               tmp_path / "p.json", tmp_path / "r")
    jpeg = pipeline_processes("jpeg", tmp_path / "f.npz", 30, "best_effort", "",
                              tmp_path / "p.json", tmp_path / "r")
    names = {p: {side: [n for n, _ in procs] for side, procs in sides.items()}
             for p, sides in (("split", split), ("jpeg", jpeg))}
    assert names["split"] == {"robot": ["camera", "edge"], "server": ["server", "probe"]}
    assert names["jpeg"] == {"robot": ["camera"], "server": ["edge", "server", "probe"]}
    # The link QoS applies to the topic that crosses: the camera's in the JPEG pipeline.
    assert jpeg["robot"][0][1][-2:] == ["--qos", "best_effort"]
    with pytest.raises(ValueError, match="unknown pipeline"):
        pipeline_processes("h264", tmp_path, 30, "reliable", "", tmp_path, tmp_path)
    assert set(PIPELINES) == {"split", "jpeg"}


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("tc"),
                    reason="network namespaces need root and iproute2")
def test_both_pipelines_deliver_frames_over_a_shaped_link(tmp_path):
    out = tmp_path / "netem"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "netem" / "run.py"), "--out", str(out),
         "--bandwidths", "20", "--seconds", "4", "--warmup", "1", "--frames", "4",
         "--width", "320", "--height", "240", "--rate", "10", "--no-accuracy",
         "--domain-id", str(int(os.environ["ROS_DOMAIN_ID"]))],
        capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    runs = {r["pipeline"]: r for r in results["runs"]}
    assert set(runs) == {"split", "jpeg"}
    for r in runs.values():
        assert r["link"] == "20 Mbit/s"
        assert r["delivered_fps"] > 2, r          # 10 fps offered
        assert 0 < r["latency_ms_p50"] < 2000, r
    # What crossed the link: ~2 KB of features per frame vs the camera's JPEG (~5 KB at
    # 320x240) plus camera_info — measured on the veth, not computed.
    split_kb = runs["split"]["uplink_bytes_per_delivered_frame"] / 1e3
    jpeg_kb = runs["jpeg"]["uplink_bytes_per_delivered_frame"] / 1e3
    assert 1.0 < split_kb < jpeg_kb, (split_kb, jpeg_kb)
    assert "| 20 Mbit/s | split |" in (out / "results.md").read_text()
    # No namespace of ours is left behind.
    assert not {n for n in namespaces() if n.startswith(f"{PREFIX}-")}
