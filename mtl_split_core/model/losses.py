"""The multi-task loss: each enabled task's own loss (from the task registry), combined by
learned uncertainty weighting (Kendall et al. 2018: sum exp(-s_i) L_i + s_i) or fixed weights.

Partial labels: ``labelled`` says per task which frames of the batch carry its label. A task's
loss is taken over those frames only (outputs and targets indexed on the batch axis); a task
with none in the batch is left out of the sum altogether, its ``s_i`` included, so neither its
head nor its weight gets a gradient from placeholder labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from mtl_split_core.tasks.registry import get_task


def select_frames(value: Any, index: torch.Tensor) -> Any:
    """``value`` restricted to the batch positions ``index`` (1-D long tensor): tensors are
    indexed on their first axis, dicts / lists / tuples element-wise; anything else is kept."""
    if isinstance(value, torch.Tensor):
        return value[index.to(value.device)]
    if isinstance(value, Mapping):
        return {key: select_frames(item, index) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [value[i] for i in index.tolist()]
    return value


class MultiTaskLoss(nn.Module):
    """Total loss over the enabled tasks; ``weighting`` is 'uncertainty' or 'fixed'."""

    def __init__(self, tasks: Iterable[str], weighting: str = "uncertainty",
                 fixed_weights: dict | None = None):
        super().__init__()
        if weighting not in ("uncertainty", "fixed"):
            raise ValueError(f"weighting {weighting!r}: expected 'uncertainty' or 'fixed'")
        self.tasks = tuple(tasks)
        self._specs = {t: get_task(t) for t in self.tasks}
        self.weighting = weighting
        self.fixed = {t: 1.0 for t in self.tasks} | (fixed_weights or {})
        # s_i = log sigma_i^2, one learned scalar per task.
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def task_loss(self, name: str, out: Mapping[str, torch.Tensor], targets: Any,
                  labelled: torch.Tensor | None = None) -> torch.Tensor | None:
        """Task ``name``'s loss over the frames ``labelled`` (N,) bool marks (None = all);
        None when no frame of the batch is labelled for it."""
        task = self._specs[name]
        if labelled is None or bool(labelled.all()):
            return task.loss(out, targets)  # the whole batch: exactly the unmasked loss
        index = torch.nonzero(labelled.reshape(-1)).reshape(-1)
        if not len(index):
            return None
        return task.loss(select_frames(dict(out), index), select_frames(targets, index))

    def forward(self, out: Mapping[str, torch.Tensor], targets: Mapping[str, Any],
                labelled: Mapping[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """``targets``: task name -> that task's targets (``Task.targets``); ``labelled``: task
        name -> (N,) bool, the frames carrying that task's label (a task not in it, or None:
        every frame). Returns the total and the loss of each task present in the batch."""
        labelled = labelled or {}
        losses: dict[str, torch.Tensor] = {}
        for task in self.tasks:
            loss = self.task_loss(task, out, targets[task], labelled.get(task))
            if loss is not None:
                losses[task] = loss
        # No task labelled at all: a zero that still backpropagates (to zero gradients).
        total: Any = self.log_vars.sum() * 0.0 if not losses else 0.0
        for i, task in enumerate(self.tasks):
            if task not in losses:
                continue
            if self.weighting == "uncertainty":
                total = total + torch.exp(-self.log_vars[i]) * losses[task] + self.log_vars[i]
            else:
                total = total + self.fixed[task] * losses[task]
        return total, {k: float(v.detach()) for k, v in losses.items()}


def scaled_output_distance(out: Mapping[str, torch.Tensor],
                           teacher: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean over the outputs of MSE(student, teacher) / var(teacher): every output counts
    alike whatever its units (the distillation term of ``train --distill``; train-eb weighs
    per task: ``train_entropy.output_distance``)."""
    terms = [((out[k].float() - t.float()) ** 2).mean() / (t.float().var() + 1e-6)
             for k, t in teacher.items()]
    return torch.stack(terms).mean()
