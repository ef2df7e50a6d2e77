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
    proc = subprocess.Popen([sys.executable, "-m", "mtl_split_tools.demo", "--frames", "6",
                             "--rate", "3", "--out", str(out)],
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
    accuracy = metrics["accuracy"]
    # The default model on sim frames: far above chance on every task (6 frames: loose bounds).
    assert accuracy["detection"]["mAP50"] > 0.2 and accuracy["segmentation"]["mIoU"] > 0.3
    assert accuracy["depth"]["delta1"] > 0.5
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    assert "Traceback" not in log
