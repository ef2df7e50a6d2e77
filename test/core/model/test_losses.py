"""Uncertainty weighting learns; fixed weights scale each task's registered loss."""

import math

import pytest
import torch

from mtl_split_core.model.losses import MultiTaskLoss


def test_uncertainty_weighting_trains_log_vars():
    loss = MultiTaskLoss(("segmentation", "depth"), weighting="uncertainty")
    out = {"segmentation": torch.randn(1, 3, 4, 4, requires_grad=True),
           "depth": torch.full((1, 1, 4, 4), 3.0, requires_grad=True)}
    targets = {"segmentation": torch.zeros(1, 4, 4, dtype=torch.long),
               "depth": torch.full((1, 4, 4), 1.0)}
    total, parts = loss(out, targets)
    total.backward()
    assert set(parts) == {"segmentation", "depth"} and loss.log_vars.grad.abs().sum() > 0
    fixed = MultiTaskLoss(("depth",), weighting="fixed", fixed_weights={"depth": 2.0})
    assert math.isclose(float(fixed(out, targets)[0]), 2 * parts["depth"], rel_tol=1e-5)
    with pytest.raises(ValueError, match="weighting"):
        MultiTaskLoss(("depth",), weighting="magic")


def _batch(n=4, seed=0):
    """Network outputs and targets of every built-in task for ``n`` frames of 32x48."""
    from mtl_split_core.model import ModelConfig
    from mtl_split_core.tasks import get_task

    g = torch.Generator().manual_seed(seed)
    config = ModelConfig()
    out = {"heatmap": torch.randn(n, 7, 4, 6, generator=g, requires_grad=True),
           "size": torch.randn(n, 2, 4, 6, generator=g, requires_grad=True),
           "offset": torch.randn(n, 2, 4, 6, generator=g, requires_grad=True),
           "segmentation": torch.randn(n, 11, 32, 48, generator=g, requires_grad=True),
           "depth": (torch.rand(n, 1, 32, 48, generator=g) * 5 + 0.5).requires_grad_()}
    batch = {"image": torch.zeros(n, 3, 32, 48),
             "seg": torch.randint(0, 11, (n, 32, 48), generator=g),
             "depth": torch.rand(n, 32, 48, generator=g) * 5 + 0.5,
             "boxes": [torch.tensor([[4.0 + i, 4.0, 20.0 + i, 24.0]]) for i in range(n)],
             "labels": [torch.tensor([i % 7]) for i in range(n)]}
    targets = {t: get_task(t).targets(batch, config) for t in config.tasks}
    return out, targets


def test_a_task_without_labelled_frames_adds_nothing_and_gets_no_gradient():
    out, targets = _batch()
    loss = MultiTaskLoss(("detection", "segmentation", "depth"))
    none = torch.zeros(4, dtype=torch.bool)
    total, parts = loss(out, targets, {"segmentation": none})
    assert set(parts) == {"detection", "depth"} and torch.isfinite(total)
    only = MultiTaskLoss(("detection", "depth"))
    assert float(total) == pytest.approx(float(only(out, targets)[0]), rel=1e-6)
    total.backward()
    assert out["segmentation"].grad is None  # placeholders teach nothing
    assert loss.log_vars.grad[1] == 0 and loss.log_vars.grad[[0, 2]].abs().min() > 0
    assert out["depth"].grad.abs().sum() > 0


def test_a_mixed_batch_gives_the_loss_of_its_labelled_frames():
    from mtl_split_core.model.losses import select_frames

    out, targets = _batch(n=5, seed=1)
    mask = torch.tensor([True, False, True, True, False])
    index = torch.tensor([0, 2, 3])
    loss = MultiTaskLoss(("detection", "segmentation", "depth"), weighting="fixed")
    for task in ("detection", "segmentation", "depth"):
        masked = loss.task_loss(task, out, targets[task], mask)
        subset = loss.task_loss(task, select_frames(out, index),
                                select_frames(targets[task], index))
        everything = loss.task_loss(task, out, targets[task])
        assert float(masked) == pytest.approx(float(subset), rel=1e-6), task
        assert float(masked) != pytest.approx(float(everything), rel=1e-3), task
    # All frames labelled (or no flags at all): exactly today's loss.
    full = loss(out, targets, {t: torch.ones(5, dtype=torch.bool) for t in loss.tasks})[0]
    assert float(full) == float(loss(out, targets)[0])


def test_no_task_labelled_is_a_zero_loss_that_still_backpropagates():
    out, targets = _batch()
    loss = MultiTaskLoss(("segmentation", "depth"))
    none = torch.zeros(4, dtype=torch.bool)
    total, parts = loss(out, targets, {"segmentation": none, "depth": none})
    assert parts == {} and float(total) == 0.0
    total.backward()
    assert float(loss.log_vars.grad.abs().sum()) == 0.0 and out["depth"].grad is None


def test_select_frames_indexes_nested_targets_on_the_batch_axis():
    from mtl_split_core.model.losses import select_frames

    value = {"a": torch.arange(4), "b": [torch.zeros(1), torch.ones(2), torch.zeros(3),
                                         torch.ones(4)], "c": "kept"}
    got = select_frames(value, torch.tensor([1, 3]))
    assert got["a"].tolist() == [1, 3] and [len(t) for t in got["b"]] == [2, 4]
    assert got["c"] == "kept"
