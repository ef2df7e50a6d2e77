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
