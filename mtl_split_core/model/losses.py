"""The multi-task loss: each enabled task's own loss (from the task registry), combined by
learned uncertainty weighting (Kendall et al. 2018: sum exp(-s_i) L_i + s_i) or fixed weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from mtl_split_core.tasks.registry import get_task


class MultiTaskLoss(nn.Module):
    """Total loss over the enabled tasks; ``weighting`` is 'uncertainty' or 'fixed'."""

    def __init__(self, tasks: Iterable[str], weighting: str = "uncertainty",
                 fixed_weights: dict | None = None):
        super().__init__()
        if weighting not in ("uncertainty", "fixed"):
            raise ValueError(f"weighting {weighting!r}: expected 'uncertainty' or 'fixed'")
        self.tasks = tuple(tasks)
        self._task_specs = [get_task(t) for t in self.tasks]
        self.weighting = weighting
        self.fixed = {t: 1.0 for t in self.tasks} | (fixed_weights or {})
        # s_i = log sigma_i^2, one learned scalar per task.
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, out: Mapping[str, torch.Tensor], targets: Mapping[str, Any]
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """``targets``: task name -> that task's targets (``Task.targets``)."""
        losses = {task.name: task.loss(out, targets[task.name]) for task in self._task_specs}
        total: Any = 0.0
        for i, task in enumerate(self.tasks):
            if self.weighting == "uncertainty":
                total = total + torch.exp(-self.log_vars[i]) * losses[task] + self.log_vars[i]
            else:
                total = total + self.fixed[task] * losses[task]
        return total, {k: float(v.detach()) for k, v in losses.items()}
