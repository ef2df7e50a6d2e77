"""`make demo` (mtl_split_tools.demo), the main job: sim camera -> edge -> server over real DDS,
scored against the simulator's ground truth, on the packaged default model."""

import json
import os
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros


def test_the_demo_runs_every_frame_through_the_pipeline_and_scores_it(tmp_path):
    out = tmp_path / "demo"
    # Two seeds (two scenes, one after the other), 3 frames each.
    proc = subprocess.Popen([sys.executable, "-m", "mtl_split_tools.demo", "--frames", "3",
                             "--seeds", "0,1", "--rate", "3", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames_complete"] == 6, metrics
    assert metrics["bytes_per_frame"]["ratio"] < 1.0  # features are smaller than JPEG
    assert metrics["bytes_per_frame"]["upload_mean"] > 0  # the right baseline, measured too
    accuracy = metrics["accuracy"]
    # The default model on sim frames: far above chance on every task (6 frames: loose bounds).
    assert accuracy["detection"]["mAP50"] > 0.2 and accuracy["segmentation"]["mIoU"] > 0.3
    assert accuracy["depth"]["delta1"] > 0.5
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    assert "Traceback" not in log
    # Each seed scored on its own, and how the frames differ from the test split printed.
    assert metrics["seeds"] == [0, 1] and set(metrics["accuracy_per_seed"]) == {"0", "1"}
    assert "accuracy vs sim ground truth, seed 1:" in log and "all 6 frames" in log
    views = metrics["frames_vs_test_split"]
    assert views["demo"]["frames"] == 6 and views["random_views"]["frames"] == 6
    assert "| object distance, median |" in log and "b3Warning" not in log


def test_demo_rejects_bad_seeds_and_codecs_in_one_line(tmp_path):
    for bad in (["--seeds", "1,x"], ["--seeds", "0", "--bag", str(tmp_path)],
                ["--codec", "zstd"], ["--codec", "webp-q80/1"]):
        proc = subprocess.run([sys.executable, "-m", "mtl_split_tools.demo", *bad,
                               "--out", str(tmp_path / "o")], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert "error:" in last and bad[0] in last, proc.stderr
