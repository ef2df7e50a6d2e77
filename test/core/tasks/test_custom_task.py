"""A fourth task defined and registered only here (segmentation edges) trains a step, shows up
in the evaluation and comes out of the server runner: adding a task needs no other file."""

import csv
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtl_split_core.evaluate import evaluate, headline
from mtl_split_core.model import ModelConfig, ModelConfigError, load_model
from mtl_split_core.model.heads import conv_head
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import ServerRunner
from mtl_split_core.tasks import (
    OutputSpec,
    PostprocessContext,
    Task,
    register_task,
    task_names,
    unregister_task,
)
from mtl_split_core.tasks.base import truth_like
from mtl_split_core.train import train
from support.tiny_data import tiny_dataset


def seg_edges(seg: np.ndarray) -> np.ndarray:
    """1 where a pixel's class differs from its right or lower neighbour."""
    seg = np.asarray(seg)
    e = np.zeros(seg.shape, bool)
    e[..., :, :-1] |= seg[..., :, 1:] != seg[..., :, :-1]
    e[..., :-1, :] |= seg[..., 1:, :] != seg[..., :-1, :]
    return e


class EdgesHead(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.logits = conv_head(cin, 1)

    def forward(self, x, out_hw, focal=None):
        return {"edges": F.interpolate(self.logits(x), size=out_hw, mode="bilinear",
                                       align_corners=False)}


class EdgeIoU:
    def __init__(self):
        self.tp = self.fp = self.fn = self.frames = 0

    def update(self, prediction: Mapping[str, Any], truth: Mapping[str, Any]) -> None:
        pred = prediction["edges"].astype(bool)
        gt = seg_edges(truth_like(truth["seg"], pred))
        self.tp += int((pred & gt).sum())
        self.fp += int((pred & ~gt).sum())
        self.fn += int((~pred & gt).sum())
        self.frames += 1

    def compute(self) -> dict:
        union = self.tp + self.fp + self.fn
        return {"iou": self.tp / union if union else float("nan"), "frames": self.frames}


class EdgesTask(Task):
    name = "edges"
    result_fields = ("edges",)
    outputs = (OutputSpec("edges", "mask_image"),)
    headline = {"edge_iou": "iou"}

    def build_head(self, width, config):
        return EdgesHead(width)

    def targets(self, batch, config):
        return torch.from_numpy(seg_edges(batch["seg"].cpu().numpy())).float().to(
            batch["image"].device)

    def loss(self, outputs, targets):
        return F.binary_cross_entropy_with_logits(outputs["edges"][:, 0].float(), targets)

    def postprocess(self, outputs, context: PostprocessContext):
        rows, cols = context.window()
        masks = (outputs["edges"][:, 0, rows, cols] > 0).to(torch.uint8).cpu().numpy()
        return [{"edges": m} for m in masks]

    def metric(self, config):
        return EdgeIoU()


@pytest.fixture
def edges_task():
    task = register_task(EdgesTask())
    try:
        yield task
    finally:
        unregister_task("edges")


def test_a_test_only_task_trains_evaluates_and_serves(edges_task, tmp_path):
    config = ModelConfig(backbone="mobilenetv3_small", input_size=(96, 64),
                         bottlenecks={"s16": 8}, codec="q8-zstd/1",
                         tasks=("detection", "segmentation", "depth", "edges"))
    result = train(config, tiny_dataset(8), tiny_dataset(4, seed=1), tmp_path, epochs=1,
                   batch_size=4, max_steps=1, device="cpu", pretrained=False, progress=False)
    # Training: one step, the task's loss logged beside the others.
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert rows[-1]["step"] == "1" and math.isfinite(float(rows[-1]["edges"]))
    assert float(rows[-1]["edges"]) > 0
    # Its headline number comes out of train's validation (float and through the codec).
    for kind in ("float", "codec"):
        assert 0.0 <= result[kind]["edge_iou"] <= 1.0
        assert result[kind]["mIoU"] is not None

    # The saved card carries the task; the model loads with its head.
    model, card = load_model(tmp_path / "model")
    assert card["tasks"] == ["detection", "segmentation", "depth", "edges"]
    assert any(k.startswith("heads.edges.") for k in model.state_dict())

    # Evaluation: its metric appears in the result, over every frame.
    ev = evaluate(model, tiny_dataset(4, seed=2), codec="q4-zstd/1")
    assert ev["edges"]["frames"] == 4 and 0.0 <= ev["edges"]["iou"] <= 1.0
    assert ev["segmentation"]["frames"] == 4 and headline(ev)["edge_iou"] == ev["edges"]["iou"]

    # Server runner: its result field comes out, at output resolution, beside the built-ins.
    edge = EdgeRunner.from_path(str(tmp_path / "model"), device="cpu")
    server = ServerRunner.from_path(str(tmp_path / "model"), device="cpu")
    rgb = np.random.default_rng(3).integers(0, 255, (100, 200, 3), dtype=np.uint8)  # letterbox
    out = server(edge(rgb))
    assert out.extra_fields["edges"].dtype == np.uint8
    assert out.extra_fields["edges"].shape == out.segmentation.shape == out.depth.shape
    assert out.as_dict()["edges"] is out.extra_fields["edges"]
    only = ServerRunner.from_path(str(tmp_path / "model"), device="cpu", tasks=("edges",))
    alone = only(edge(rgb))
    np.testing.assert_array_equal(alone.extra_fields["edges"], out.extra_fields["edges"])
    assert alone.segmentation is None and alone.depth is None and len(alone.boxes) == 0


def test_the_task_is_gone_after_unregistering():
    assert "edges" not in task_names()
    with pytest.raises(ModelConfigError, match="tasks"):
        ModelConfig(tasks=("segmentation", "edges"))
