"""bench/rate_accuracy.py end to end on a tiny run: every method family scored, the results'
schema, the report files; bad arguments answer in one line with exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMMAND = [sys.executable, str(ROOT / "bench" / "rate_accuracy.py")]


def _run(*args, timeout=300):
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("args, message", [
    (["--frames", "0"], "--frames: 0: must be in"),
    (["--image-codecs", "gif"], "unknown gif"),
    (["--qualities", "90,abc"], "comma-separated integers"),
    (["--camera", "640by480"], "WIDTHxHEIGHT"),
    (["--noise", "-1"], "--noise"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, args, message):
    r = _run("--out", tmp_path / "out", *args, timeout=60)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out").exists()


def test_a_used_output_folder_is_refused_before_any_work(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    r = _run("--out", tmp_path / "out", "--frames", "2", timeout=120)
    assert r.returncode == 2 and "exists and is not an empty folder" in r.stderr, r.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_tiny_run_scores_every_method_family(tmp_path):
    out = tmp_path / "ra"
    r = _run("--out", out, "--cache", tmp_path / "cache", "--frames", "4",
             "--views-per-scene", "2", "--sequences", "1", "--sequence-frames", "4",
             "--keyint", "2", "--camera", "320x240", "--qualities", "30,80",
             "--crfs", "25,40", "--image-codecs", "jpeg,webp", "--video-codecs", "h264",
             "--splits", "s16", "--photos", "astronaut", "--no-progress")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["rate_accuracy.png", "results.json",
                                                     "results.md"]
    res = json.loads((out / "results.json").read_text())
    meta = res["meta"]
    assert meta["model"]["fingerprint"] and meta["seed"] == 23 and meta["date"]
    assert "--frames 4" in meta["command"] and meta["machine"]
    metrics = meta["metrics"]
    assert metrics == {"detection": "mAP50", "segmentation": "mIoU", "depth": "delta1"}

    st = res["stills"]
    assert st["frames"] == 4 and st["scenes"] == 2
    families = {}
    for row in st["rows"]:
        families.setdefault(row["family"], []).append(row)
        assert "skipped" in row or all(0 <= row[m] <= 1 for m in metrics.values())
    # Ours: every codec of the runtime at the chosen split; image: 2 codecs x 2 qualities.
    from mtl_split_core.codec import CODECS
    assert {r["codec"] for r in families["ours"]} == set(CODECS)
    assert {(r["codec"], r["setting"]) for r in families["image"]} == {
        ("jpeg", "q30"), ("jpeg", "q80"), ("webp", "q30"), ("webp", "q80")}
    refs = {r["codec"]: r for r in families["reference"]}
    assert refs["local inference"]["bytes_per_frame"] == 0
    assert refs["raw input upload"]["bytes_per_frame"] == 320 * 240 * 3
    assert refs["png upload"]["mIoU"] == refs["local inference"]["mIoU"]
    # Image bytes rise with quality; the camera JPEG is the whole frame's.
    img = {(r["codec"], r["setting"]): r["bytes_per_frame"] for r in families["image"]}
    assert img[("jpeg", "q80")] > img[("jpeg", "q30")]
    # Comparisons: every (our curve, anchor, metric) and every our point x baseline.
    assert {(b["ours"], b["anchor"], b["metric"]) for b in st["bd_rate"]} == {
        ("split s16", a, m) for a in ("jpeg", "webp") for m in metrics.values()}
    eq = {e["ours"]: e for e in st["equal_accuracy"]}
    assert set(eq) == {f"split s16 {c}" for c in CODECS}
    for e in eq.values():
        for per in e["baselines"].values():
            assert set(per) == {*metrics.values(), "all"}
            for cell in per.values():
                assert cell["bound"] in ("=", "<=", ">")
                assert (cell["bytes"] is None) == (cell["ratio"] is None)

    sq = res["sequences"]
    assert sq["frames"] == 4 and sq["keyint"] == 2
    video = [r for r in sq["rows"] if r["family"] == "video"]
    assert {r["setting"] for r in video} == {"crf25", "crf40"}
    assert all(r["keyframes"] == 2 for r in video)  # frames 0 and 2 of the one sequence
    assert {b["anchor"] for b in sq["bd_rate"]} == {"h264"}

    ph = res["photos"]
    assert list(ph["photos"]) == ["astronaut"]
    labels = {r["label"] for r in ph["rows"]}
    assert {"jpeg q30", "webp q80", "png upload (lossless)", "split s16 q4-zstd/1"} <= labels
    md = (out / "results.md").read_text()
    for heading in ("## Stills", "### Equal accuracy", "### BD-rate", "## 30 fps sequences",
                    "## Real photographs"):
        assert heading in md
    assert (out / "rate_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
