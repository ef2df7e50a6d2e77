"""Commands end to end through the dispatcher: gen-data (+pack) then eval, and plan."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtl_split_core.cli.main import main
from mtl_split_core.plan.profile import PROFILE_VERSION

CODECS = ("f16-zstd/1", "q8-zstd/1", "q4-zstd/1")
ROOT = Path(__file__).resolve().parents[3]


def _module_run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mtl_split_core.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def _profile(scale):
    split = lambda edge, server, nbytes: {  # noqa: E731
        "edge_ms": edge * scale, "server_ms": server * scale, "shape": [1, 1, 1],
        "codecs": {c: {"bytes": nbytes / (i + 1), "encode_ms": 1.0, "decode_ms": 0.5}
                   for i, c in enumerate(CODECS)}}
    return {"version": PROFILE_VERSION, "device": f"synthetic x{scale}", "model": "m",
            "whole_ms": 40.0 * scale, "jpeg": {"bytes": 50_000, "encode_ms": 2.0,
                                               "decode_ms": 1.0},
            "splits": {"s8": split(10.0, 30.0, 20_000), "s16": split(25.0, 15.0, 2_000)}}


def test_plan_from_given_profiles_writes_csv_and_plot(tmp_path, capsys):
    edge, server = tmp_path / "edge.json", tmp_path / "server.json"
    edge.write_text(json.dumps(_profile(4.0)))
    server.write_text(json.dumps(_profile(0.25)))
    # A model whose card has no metrics (the shipped default's card has them): every option
    # is weighed by time alone.
    model = tmp_path / "model"
    model.mkdir()
    card = json.loads((ROOT / "models" / "default" / "card.json").read_text())
    card.pop("metrics", None)
    (model / "card.json").write_text(json.dumps(card))
    out = tmp_path / "plan"
    assert main(["plan", "--model", str(model), "--edge-profile", str(edge), "--server-profile",
                 str(server), "--link", "2mbit,1ms", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "no measured accuracy" in stdout
    # s8 q4: edge 40 + 1, 6,667 B at 2 Mbit/s = 26.7 + 0.5 ms, server 0.5 + 7.5 -> 76 ms;
    # s16 q4: 101 + 3.2 + 4.3 = 108 ms; local 160; JPEG upload 2 + 200.5 + 11 = 213 ms.
    assert "chosen: s8 q4-zstd/1 (76.2 ms" in stdout
    rows = (out / "plan.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(CODECS) + 2
    assert (out / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_measures_this_machine_once_for_both_sides(tmp_path, capsys, monkeypatch):
    """Without profiles both sides run on this CPU: one measurement, so LOCAL-ONLY and the
    whole network on the 'server' (JPEG upload, image upload) are the same computation at
    the same time. Measured twice under a changing load they disagreed (866 vs 6,157 ms on
    this VM), which also made LOCAL-ONLY differ from run to run of different links."""
    import mtl_split_core.cli.profile as profile_cli

    calls = []

    def measure(model, device, frames, repeats, *rest):
        calls.append(device)
        return _profile(len(calls))  # each measurement finds another load

    monkeypatch.setattr(profile_cli, "profile_model", measure)
    acc = tmp_path / "eval.json"
    acc.write_text(json.dumps([{"split": "s16", "codec": "float", "detection": {"mAP50": 0.8}}]))
    out = tmp_path / "plan"
    assert main(["plan", "--accuracy", str(acc), "--link", "2mbit,1ms", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert calls == ["cpu"]
    rows = {r.split(",")[0]: r.split(",") for r in (out / "plan.csv").read_text().splitlines()}
    local, remote = rows["LOCAL-ONLY"], rows["REMOTE-ONLY (JPEG q90)"]
    assert float(local[7]) == 40.0 and float(remote[6]) == 40.0 + 1.0  # whole + JPEG decode
    assert f"reuse it with --server-profile {out / 'edge_profile.json'}" in stdout
    assert "measured here now on cpu" in stdout
    calls.clear()  # a server device of its own: measured on its own
    assert main(["plan", "--accuracy", str(acc), "--server-device", "cuda:0", "--out",
                 str(tmp_path / "plan2")]) == 0
    assert calls == ["cpu", "cuda:0"]


def test_plan_with_a_bad_profile_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "edge.json"
    bad.write_text(json.dumps({"version": 99}))
    assert main(["plan", "--edge-profile", str(bad), "--server-profile", str(bad),
                 "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "version 99" in err


def test_eval_of_a_missing_dataset_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "none"), "--codec", "float",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dataset" in err and str(tmp_path / "none") in err


@pytest.mark.slow
def test_gen_data_then_eval_default_model(tmp_path):
    r = _module_run("gen-data", "--frames", "6", "--size", "320x240", "--out",
                    str(tmp_path / "ds"), "--frames-per-scene", "2", "--workers", "1",
                    "--pack", str(tmp_path / "sh"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "ds" / "index.json").exists() and list((tmp_path / "sh").glob("*.npz"))
    r = _module_run("eval", "--data", str(tmp_path / "ds"), "--split-set", "train", "--codec",
                    "q4-zstd/1", "--device", "cpu", "--out", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "q4-zstd/1" in r.stdout and (tmp_path / "r.json").exists()


def test_plan_weighs_eb_codecs_and_image_upload_by_the_cards_metrics(tmp_path, capsys):
    """Without --accuracy the plan reads --model's card metrics (`mtl-split eval
    --into-card`): eb-0 (measured 0.5% below float) wins on a thin link; options without a
    row, or that only one profile measured, are named and never chosen."""
    from mtl_split_core.model.card import read_card

    def profile(scale, image_upload):
        p = _profile(scale)
        p["splits"]["s16"]["codecs"]["eb-0/1"] = {"bytes": 300.0, "encode_ms": 0.5,
                                                  "decode_ms": 0.5}
        if image_upload:
            p["input"] = {"edge_ms": 0.5, "server_ms": p["whole_ms"], "shape": [3, 1, 1],
                          "codecs": {"webp-q80/1": {"bytes": 900.0, "encode_ms": 2.0,
                                                    "decode_ms": 1.0}}}
        return p

    def row(split, codec, m):
        return {"split": split, "codec": codec, "frames": 10, "detection": {"mAP50": m}}

    model = tmp_path / "model"
    model.mkdir()
    card = read_card(ROOT / "models" / "default")
    card["metrics"] = {"data": "d", "split_set": "test", "results": [
        row("s16", "float", 0.8), row("s16", "q4-zstd/1", 0.8), row("s16", "eb-0/1", 0.796)]}
    (model / "card.json").write_text(json.dumps(card))
    edge, server = tmp_path / "edge.json", tmp_path / "server.json"
    edge.write_text(json.dumps(profile(4.0, image_upload=True)))
    server.write_text(json.dumps(profile(0.25, image_upload=False)))
    assert main(["plan", "--model", str(model), "--edge-profile", str(edge), "--server-profile",
                 str(server), "--link", "2mbit,1ms", "--out", str(tmp_path / "plan")]) == 0
    stdout = capsys.readouterr().out
    assert f"accuracy: the metrics in the card of {model}" in stdout
    assert "chosen: s16 eb-0/1" in stdout
    assert "not an option: s8 q4-zstd/1: no measured accuracy for it" in stdout
    assert ("not an option: input webp-q80/1: the server profile has no image upload (input) "
            "entry") in stdout
