"""`mtl-split train` / `eval` on a sim folder: from scratch, fine-tuned with a frozen edge,
evaluated; bad combinations of options are one line and exit 2."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtl_split_core.cli.main import main
from support.tiny_data import tiny_dataset

TRAIN_OPTIONS = ["--epochs", "1", "--batch-size", "4", "--max-steps", "1", "--device", "cpu",
                 "--workers", "0"]
ROOT = Path(__file__).resolve().parents[3]
# A small network on frames whose every pixel is labelled (segmentation and depth): each
# process's part of a batch then has the loss normalisers of the whole.
TINY_NET = ["--size", "96x64", "--backbone", "mobilenetv3_small", "--no-pretrained",
            "--tasks", "segmentation,depth", "--device", "cpu"]


def write_sim_folder(root, splits=("train",) * 8 + ("val",) * 2):
    """A gen-data style folder (index.json, rgb/, depth/, seg/) of tiny frames."""
    data = tiny_dataset(len(splits))
    for sub in ("rgb", "depth", "seg"):
        (root / sub).mkdir(parents=True)
    images, annotations = [], []
    for i, split in enumerate(splits):
        name = f"f{i:03d}"
        cv2.imwrite(str(root / "rgb" / f"{name}.jpg"), data["images"][i][..., ::-1])
        cv2.imwrite(str(root / "depth" / f"{name}.png"),
                    (data["depth"][i] * 1000).astype(np.uint16))
        cv2.imwrite(str(root / "seg" / f"{name}.png"), data["seg"][i])
        images.append({"id": i, "file_name": name, "width": 96, "height": 64, "split": split,
                       "scene": i, "k": [100.0, 0, 48, 0, 100.0, 32, 0, 0, 1]})
        for x1, y1, x2, y2 in data["boxes"][i]:
            annotations.append({"id": len(annotations), "image_id": i, "category_id": 0,
                                "bbox": [float(x1), float(y1), float(x2 - x1),
                                         float(y2 - y1)], "area": 1.0, "iscrowd": 0})
    (root / "index.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return root


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return write_sim_folder(tmp_path_factory.mktemp("sim") / "ds")


@pytest.fixture(scope="module")
def scratch(sim, tmp_path_factory):
    """`mtl-split train` from scratch on ``sim`` (a 96x64 mobilenetv3_small, bottleneck 8): the
    base the fine-tuning tests start from (they only read it)."""
    out = tmp_path_factory.mktemp("scratch")
    assert main(["train", "--data", str(sim), "--out", str(out), "--size", "96x64",
                 "--backbone", "mobilenetv3_small", "--bottleneck", "8", "--no-pretrained",
                 *TRAIN_OPTIONS]) == 0
    return out


def test_train_then_fine_tune_with_a_frozen_edge_then_evaluate(sim, scratch, tmp_path, capsys):
    tuned = tmp_path / "tuned"
    base = json.loads((scratch / "model" / "card.json").read_text())
    assert base["depth_reference_focal"] == 100.0 and base["input_size"] == [96, 64]
    assert main(["train", "--data", str(sim), "--init", str(scratch / "model"),
                 "--freeze-edge", "--tasks", "depth", "--out", str(tuned),
                 *TRAIN_OPTIONS]) == 0
    card = json.loads((tuned / "model" / "card.json").read_text())
    assert card["accepts_edge_fingerprint"] == [base["fingerprint"]]
    assert card["name"] == f"{base['name']}_tuned" and card["tasks"] == ["depth"]
    assert card["bottlenecks"] == base["bottlenecks"]
    assert card["fine_tuned_from"]["fresh_heads"] == []
    capsys.readouterr()
    assert main(["eval", "--model", str(tuned / "model"), "--data", str(sim), "--split-set",
                 "val", "--codec", "float", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "on 2 val frames" in out and "| float (unsplit) |" in out


def test_the_anti_aliased_backbone_trains_from_imagenet_and_loads(sim, tmp_path):
    """--backbone efficientnet_lite0_aa (issue #23's experiment): the ImageNet weights load
    into it, it trains, and its card builds the anti-aliased network again."""
    from mtl_split_core.backbones.efficientnet_lite import SameConv2d
    from mtl_split_core.model import load_model

    assert main(["train", "--data", str(sim), "--out", str(tmp_path / "aa"), "--size", "96x64",
                 "--backbone", "efficientnet_lite0_aa", "--bottleneck", "16",
                 *TRAIN_OPTIONS]) == 0
    model, card = load_model(tmp_path / "aa" / "model")
    assert card["backbone"] == "efficientnet_lite0_aa"
    assert model.backbone.name == "efficientnet_lite0_aa"
    assert any(m.anti_alias for m in model.backbone.modules() if isinstance(m, SameConv2d))


def test_fine_tuning_may_add_bottlenecks_at_other_splits(sim, scratch, tmp_path, capsys):
    """--init M --split s16,s32 (issue 14): a deployed single-split model becomes one card
    that serves more splits, each step at a random one of them: its own bottleneck and weights
    are kept, the new split's bottleneck starts fresh, batch-norm statistics outside the new
    bottleneck stay the base's (averaged over splits they fit none); validation per split.
    Changing an existing bottleneck is refused."""
    from mtl_split_core.model import load_model

    base_dir, multi = scratch, tmp_path / "multi"
    assert main(["train", "--data", str(sim), "--init", str(base_dir / "model"), "--out",
                 str(multi), "--split", "s16,s32", "--bottleneck", "8,4", "--lr", "0",
                 *TRAIN_OPTIONS]) == 0
    base, _ = load_model(base_dir / "model")
    tuned, card = load_model(multi / "model")
    assert {k: v for k, v in card["bottlenecks"].items() if v} == {"s16": 8, "s32": 4}
    assert card["trained"]["splits"] == ["s16", "s32"] and card["default_split"] == "s16"
    tuned_state = tuned.state_dict()
    for name, value in base.state_dict().items():  # lr 0 and fixed statistics: all kept
        assert torch.equal(tuned_state[name], value), name
    assert set(json.loads((multi / "val_metrics.json").read_text())["per_split"]) == \
        {"s16", "s32"}
    capsys.readouterr()
    assert main(["train", "--data", str(sim), "--init", str(base_dir / "model"), "--out",
                 str(tmp_path / "bad"), "--bottleneck", "4", *TRAIN_OPTIONS]) == 2
    assert "keeps the base's bottlenecks" in capsys.readouterr().err


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """An untrained model folder to pass to --init (read only: every option is refused)."""
    from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model

    path = tmp_path_factory.mktemp("untrained") / "m"
    save_model(path, MultiTaskSplitNet(ModelConfig(backbone="mobilenetv3_small",
                                                   input_size=(96, 64))))
    return path


@pytest.mark.parametrize("args, message", [
    (["--freeze-edge"], "--freeze-edge: needs --init"),
    (["--distill", "1"], "--distill: needs --init"),
    (["--per-split-heads"], "--per-split-heads: needs --init"),
    (["--per-split-server"], "--per-split-server: needs --init"),
    (["--init", "{scratch}", "--per-split-heads"],
     "per-split heads: train at least one split other than the default split s16"),
    (["--split", "s16,s32"], "--split s16,s32: training several splits needs --init"),
    (["--init", "{scratch}", "--split", "s16,s7"], "--split s16,s7: expected distinct split"),
    (["--init", "{scratch}", "--split", "s16,s32", "--bottleneck", "8,4,2"],
     "expected one number or one per split"),
    (["--init", "{scratch}", "--backbone", "resnet18", "--size", "64x64"],
     "--backbone, --size: fine-tuning keeps"),
    (["--init", "{missing}"], "--init {missing}: model"),
])
def test_bad_option_combinations_are_one_line_and_exit_2(sim, untrained, tmp_path, capsys, args,
                                                         message):
    paths = {"scratch": str(untrained), "missing": str(tmp_path / "none")}
    args = [a.format(**paths) for a in args]
    assert main(["train", "--data", str(sim), "--out", str(tmp_path / "o"), *args,
                 *TRAIN_OPTIONS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(**paths) in err
    assert not (tmp_path / "o" / "model").exists()


def _cli(args, *, torchrun=0):
    """argv of ``mtl-split ARGS`` in a new process, under ``torchrun`` with N processes (N > 0);
    one thread per process keeps the arithmetic the same in every run."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={torchrun}"] \
        if torchrun else []
    return [sys.executable, *launcher, "-m", "mtl_split_core.cli", *map(str, args)]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _log(out):
    return list(csv.DictReader(open(out / "train_log.csv")))


@pytest.mark.slow
def test_two_processes_train_as_one_process_with_the_same_global_batch(tmp_path):
    """torchrun, 2 CPU processes (gloo) with 2 frames each = 1 process with batch 4: each
    process takes its half of every global batch and its slice of the batch's augmentation,
    batch norm statistics span both. One step per epoch, so the log is the loss curve. The
    first step's loss is the same to float rounding; Adam then turns rounding-level gradient
    differences of parameters whose gradient is ~0 into lr-sized steps (its first update is
    ~lr * sign(g)), so later steps agree within 1%, not bit for bit."""
    data = write_sim_folder(tmp_path / "ds", ("train",) * 4 + ("val",))
    common = ["train", "--data", data, *TINY_NET, "--epochs", "4", "--batch-size", "4",
              "--lr", "1e-3"]
    one = subprocess.run(_cli([*common, "--out", tmp_path / "one", "--workers", "0"]),
                         env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(_cli([*common, "--out", tmp_path / "two", "--workers", "1"],
                              torchrun=2), env=ENV, cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "world size 2 (DistributedDataParallel)" in two.stdout
    assert "world size 1 (one process)" in one.stdout
    a, b = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert len(a) == len(b) == 4
    assert float(a[0]["loss"]) == pytest.approx(float(b[0]["loss"]), abs=2e-4)
    for ra, rb in zip(a, b):
        for key in ("loss", "segmentation", "depth"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=0.01), (ra, rb)
    assert float(b[-1]["loss"]) < float(b[0]["loss"])
    card = json.loads((tmp_path / "two" / "model" / "card.json").read_text())
    assert card["trained"]["world_size"] == 2 and card["trained"]["batch_size"] == 4
    # Only the first process wrote: one model, one log, no stray temporary files.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "last.pt", "model", "train_log.csv", "val_metrics.json"]


def _checkpoint_step(path):
    try:
        return torch.load(path, weights_only=False)["state"]
    except Exception:  # noqa: BLE001 - not written yet
        return None


@pytest.mark.slow
def test_killed_mid_epoch_and_resumed_gives_the_same_weights(tmp_path):
    """SIGKILL after a mid-epoch checkpoint, then --resume: the final weights equal an
    uninterrupted run's bit for bit (optimiser, scheduler, random states and the position in
    the epoch are in the checkpoint; the epoch's order depends on (seed, epoch) only)."""
    data = write_sim_folder(tmp_path / "ds", ("train",) * 8 + ("val",))
    common = ["train", "--data", data, *TINY_NET, "--epochs", "3", "--batch-size", "2",
              "--checkpoint-every", "1", "--workers", "1"]
    ref = subprocess.run(_cli([*common, "--out", tmp_path / "ref"]), env=ENV, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "cut"
    proc = subprocess.Popen(_cli([*common, "--out", out]), env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            state = _checkpoint_step(out / "last.pt") if (out / "last.pt").exists() else None
            if state is not None and state["batch"] > 0:  # mid-epoch
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = _checkpoint_step(out / "last.pt")
    assert killed_at["step"] < 12 and not (out / "model").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial file left
    resumed = subprocess.run(_cli([*common, "--out", out, "--resume"]), env=ENV, cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=False)
    b = torch.load(out / "last.pt", weights_only=False)
    assert a["state"]["step"] == b["state"]["step"] == 12
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert [r["loss"] for r in _log(tmp_path / "ref")] == [r["loss"] for r in _log(out)]


def test_a_data_set_over_the_memory_budget_is_one_line_and_exit_2(sim, tmp_path, capsys):
    assert main(["train", "--data", str(sim), "--out", str(tmp_path / "o"),
                 "--memory-budget", "1", *TINY_NET, "--epochs", "1", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "over --memory-budget 1 MB" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_two_processes_train_when_one_part_of_a_batch_lacks_a_task(tmp_path):
    """Depth-only frames beside fully labelled ones, one frame per process: a process whose
    frame has no boxes still runs every head's backward (its synchronised batch norms are
    collectives both processes must reach), so training neither hangs nor aborts."""
    from support.data_layouts import render, write_folder

    frames = render(5, 96, 64, 4)
    write_folder(tmp_path / "f", frames, labelled={0: ["depth"], 2: ["depth"]})
    run = subprocess.run(_cli(["train", "--data", f"folder:{tmp_path / 'f'}", "--size", "96x64",
                               "--backbone", "mobilenetv3_small", "--no-pretrained",
                               "--device", "cpu", "--epochs", "2", "--batch-size", "2",
                               "--workers", "0", "--out", tmp_path / "o"], torchrun=2),
                         env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = _log(tmp_path / "o")
    assert len(rows) == 2 and all(r["detection"] and r["depth"] for r in rows)
