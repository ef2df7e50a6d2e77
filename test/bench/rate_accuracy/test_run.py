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
    (["--temporal", "t30-q4-zstd/1"], "not a temporal codec id"),
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


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny run of every part: 4 stills, one 4-frame sequence, 2 qualities, 2 CRFs."""
    tmp = tmp_path_factory.mktemp("rate_accuracy")
    out = tmp / "ra"
    r = _run("--out", out, "--cache", tmp / "cache", "--frames", "4",
             "--views-per-scene", "2", "--sequences", "1", "--sequence-frames", "4",
             "--keyint", "2", "--camera", "320x240", "--qualities", "30,80",
             "--crfs", "25,40", "--image-codecs", "jpeg,webp", "--video-codecs", "h264",
             "--temporal", "t2-s20-q4-zstd/1", "--photos", "astronaut", "--no-progress")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return out


@pytest.mark.slow  # ~100 s on the shared 2-core VM: the model on 4 frames x 15 methods
def test_tiny_run_scores_every_method_family(tiny):
    out = tiny
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
    # Ours: every codec of the model at every split the card serves (the default: s16, s8,
    # s32; its entropy-coded ones at s16); image: 2 codecs x 2 qualities.
    from mtl_split_core.codec import split_codecs
    from mtl_split_core.entropy_tables import tables_of
    from mtl_split_core.model.card import read_card
    from mtl_split_core.plan.profile import served_splits
    card = read_card(ROOT / "models" / "default")
    served = served_splits(card, [p["name"] for p in card["split_points"]])
    tables = tables_of(card["entropy"])
    ours = {(s, c) for s in served for c in split_codecs(tables, s)}
    assert any(c.startswith("ebc-") for _, c in ours)
    assert {(r["setting"], r["codec"]) for r in families["ours"]} == ours
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
    curves = {f"split {s}" for s in served} | ({"ours, any split"} if len(served) > 1 else set())
    assert {(b["ours"], b["anchor"], b["metric"]) for b in st["bd_rate"]} == {
        (o, a, m) for o in curves for a in ("jpeg", "webp") for m in metrics.values()}
    eq = {e["ours"]: e for e in st["equal_accuracy"]}
    assert set(eq) == {f"split {s} {c}" for s, c in ours}
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
    # The temporal codec streams the sequence: a keyframe every 2 frames, deltas between.
    temporal = [r for r in sq["rows"] if r["codec"] == "t2-s20-q4-zstd/1"]
    assert len(temporal) == 1 and temporal[0]["family"] == "ours"
    per_frame = next(r for r in sq["rows"] if r["codec"] == "q4-zstd/1")
    assert 0 < temporal[0]["bytes_per_frame"] < per_frame["bytes_per_frame"] + 15

    ph = res["photos"]
    assert list(ph["photos"]) == ["astronaut"]
    labels = {r["label"] for r in ph["rows"]}
    assert {"jpeg q30", "webp q80", "png upload (lossless)", "split s16 q4-zstd/1"} <= labels
    md = (out / "results.md").read_text()
    for heading in ("## Stills", "### Equal accuracy", "### BD-rate", "## 30 fps sequences",
                    "## Real photographs"):
        assert heading in md
    assert (out / "rate_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # shares the tiny run
def test_runs_of_separate_parts_merge_into_one_report(tiny, tmp_path):
    full = json.loads((tiny / "results.json").read_text())
    parts = {"stills": ["stills", "photos"], "sequences": ["sequences"]}
    paths = []
    for name, keys in parts.items():
        part = {"meta": {**full["meta"], "parts": keys}, **{k: full[k] for k in keys}}
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(part))
    r = _run("--out", tmp_path / "merged", "--merge", *paths, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    for key in ("stills", "sequences", "photos"):
        assert merged[key] == full[key]
    assert merged["meta"]["parts"] == ["stills", "photos", "sequences"]
    assert len(merged["meta"]["runs"]) == 2 and "--merge" in merged["meta"]["merged_by"]
    # A part measured twice, or runs of different models, are refused.
    r = _run("--out", tmp_path / "twice", "--merge", paths[0], paths[0], timeout=60)
    assert r.returncode == 2 and "is in two of the results" in r.stderr
    other = json.loads(paths[1].read_text())
    other["meta"]["seed"] = 99
    paths[1].write_text(json.dumps(other))
    r = _run("--out", tmp_path / "other", "--merge", paths[0], paths[1], timeout=60)
    assert r.returncode == 2 and "differs" in r.stderr and "seed" in r.stderr
