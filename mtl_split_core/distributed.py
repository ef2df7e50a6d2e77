"""Data-parallel training over processes (``torchrun``): the process group, and batch norm
whose statistics span every process's part of the batch.

``torchrun --standalone --nproc-per-node N ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; ``init_world`` joins the group (gloo on the CPU, nccl on CUDA). Without them
training is one process, as before. Batch norm: with per-process statistics two processes of
batch B/2 would train another network than one process of batch B, so every batch norm layer
averages its statistics over the processes: ``torch.nn.SyncBatchNorm`` on CUDA (it supports
no other device), ``AllReduceBatchNorm`` on the CPU (the same mathematics, through a
differentiable all-reduce).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import _functional_collectives as collectives


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that logs and writes the outputs."""
        return self.rank == 0


def launched_world() -> World:
    """The world torchrun describes in the environment (one process without it)."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    return World(int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"]),
                 int(os.environ.get("LOCAL_RANK", "0")))


def init_world(device_type: str) -> World:
    """Join torchrun's process group (gloo on the CPU, nccl on CUDA); one process: nothing."""
    world = launched_world()
    if world.size > 1 and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return world


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_world(values: torch.Tensor, world: World) -> torch.Tensor:
    """``values`` averaged over the processes (itself for one)."""
    if world.size > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= world.size
    return values


class AllReduceBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole batch across processes.

    Sums, sums of squares and counts are all-reduced with a differentiable all-reduce, so the
    gradient also flows through the other processes' statistics, as one process's would.
    Evaluation and running statistics are BatchNorm2d's (same state dict).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        n = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        # Differentiable (its backward all-reduces the gradients): torch's recommended
        # successor of torch.distributed.nn.functional.all_reduce.
        group = dist.group.WORLD
        assert group is not None  # initialised: checked above
        stats = collectives.all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), n]),
                                       "sum", group)
        stats = collectives.wait_tensor(stats)
        c = x.shape[1]
        count = stats[-1]
        mean = stats[:c] / count
        var = (stats[c:2 * c] / count - mean * mean).clamp(min=0)
        if self.track_running_stats and self.running_mean is not None and \
                self.running_var is not None and self.num_batches_tracked is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else \
                    1.0 / float(self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def sync_batch_norm(module: nn.Module, device_type: str) -> nn.Module:
    """``module`` with every BatchNorm2d replaced by one synchronised over the processes
    (parameters, buffers and train/eval mode carried over; state dict keys unchanged)."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        new = AllReduceBatchNorm(module.num_features, module.eps, module.momentum,
                                 module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        for p_new, p_old in zip(new.parameters(), module.parameters()):
            p_new.requires_grad_(p_old.requires_grad)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert(child))
    return module
