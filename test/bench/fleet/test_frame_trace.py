"""bench/fleet/frame_trace.py and latency_pairs.py: the per-hop timeline from trace events, the
wrappers (an older tree's missing functions left alone), the pairs' summary; and one short
traced pipeline run over real nodes and DDS."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "fleet"
sys.path.insert(0, str(BENCH))

import frame_trace  # noqa: E402
import latency_pairs  # noqa: E402

MS = 1_000_000


def test_timeline_hops_run_from_the_previous_event_present():
    stamp = 1_000 * MS
    events = [(stamp, "camera_published", stamp + 1 * MS),
              (stamp, "edge_receive", stamp + 3 * MS),
              # no edge_taken: the next hop runs from edge_receive
              (stamp, "edge_image_decoded", stamp + 4 * MS),
              (stamp, "pub:detections", stamp + 10 * MS),
              (stamp, "pub:detections", stamp + 99 * MS),  # a second one: the first counts
              (stamp, "probe:detections", stamp + 12 * MS),
              (stamp, "not_an_event_of_the_order", stamp + 5 * MS)]
    late = 5_000 * MS  # its detections arrive outside the window: left out
    events += [(late, "camera_published", late + 50 * MS),
               (late, "probe:detections", late + 60 * MS)]
    out = frame_trace.timeline(events, (0, 2_000 * MS))
    assert out["frames"] == 1
    hops = {h["event"]: h["p50"] for h in out["hops"]}
    assert hops == {"camera_published": 1.0, "edge_receive": 2.0, "edge_image_decoded": 1.0,
                    "pub:detections": 6.0, "probe:detections": 2.0}
    assert out["since_stamp_p50"]["probe:detections"] == 12.0
    assert [h["event"] for h in out["hops"]] == [e for e, _ in frame_trace.ORDER
                                                  if e in hops]


def test_wrap_calls_around_even_on_error_and_skips_what_a_tree_lacks():
    calls = []

    class Owner:
        def work(self, x):
            if x < 0:
                raise ValueError(x)
            return x * 2

    frame_trace._wrap(Owner, "work", before=lambda self, x: calls.append(("before", x)),
                      after=lambda result, self, x: calls.append(("after", result)))
    frame_trace._wrap(Owner, "absent_in_this_tree", before=lambda *a: calls.append("no"))
    assert Owner().work(3) == 6
    with pytest.raises(ValueError):
        Owner().work(-1)
    assert calls == [("before", 3), ("after", 6), ("before", -1), ("after", None)]
    assert not hasattr(Owner, "absent_in_this_tree")


def _run(e2e_p50, hops):
    return {"e2e_ms_p50": e2e_p50, "e2e_ms_p99": e2e_p50 * 2, "delivered_fps": 30.0,
            "trace": {"hops": [{"event": e, "hop": f"hop {e}", "p50": v}
                               for e, v in hops.items()]}}


def test_pairs_summary_takes_medians_and_the_markdown_gives_ratios():
    runs = {"after": [_run(9.0, {"a": 1.0, "b": 2.0}), _run(11.0, {"a": 3.0, "b": 2.0}),
                      _run(10.0, {"a": 2.0, "b": 2.0})],
            "before": [_run(20.0, {"a": 4.0}), _run(22.0, {"a": 4.0}),
                       _run(21.0, {"a": 4.0})]}
    summary = latency_pairs.summarise(runs)
    assert summary["after"]["e2e_ms_p50"] == 10.0 and summary["before"]["e2e_ms_p99"] == 42.0
    assert summary["after"]["hop_ms_p50"] == {"a": 2.0, "b": 2.0}
    meta = {k: "x" for k in ("command", "machine", "date", "load", "model", "device",
                             "precision", "dds_profile", "before", "after", "camera")}
    meta.update(pairs=3, seconds=10.0, warmup=3.0)
    md = latency_pairs.markdown(summary, meta)
    assert "| e2e p50 ms (median of runs) | 21.00 | 10.00 | 0.48 |" in md
    assert "| hop a | 4.000 | 2.000 | 0.50 |" in md
    assert "| hop b | - | 2.000 | - |" in md  # a hop only the after tree has


def test_pairs_bad_arguments_exit_2(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH / "latency_pairs.py"), "--before",
                        str(tmp_path), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.ros
@pytest.mark.slow
def test_a_traced_pipeline_run_has_every_hop(tmp_path):
    from support.ros_nodes import tiny_model

    out = tmp_path / "pipeline"
    r = subprocess.run([sys.executable, str(BENCH / "pipeline.py"), "--trace", "--model",
                        tiny_model(tmp_path / "tiny"), "--rate", "10", "--seconds", "3",
                        "--warmup", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    trace = json.loads((out / "pipeline.json").read_text())["trace"]
    assert trace["missing"] == [] and trace["frames"] > 0
    assert {h["event"] for h in trace["hops"]} \
        == {e for e, _ in frame_trace.ORDER} - frame_trace.CUDA_ONLY
    since = trace["since_stamp_p50"]
    assert 0 < since["camera_published"] < since["edge_model"] < since["server_model"] \
        < since["probe:detections"]
    assert "Per-frame timeline" in (out / "pipeline.md").read_text()
