"""Batch norm over processes: two gloo processes with half a batch each get the statistics,
outputs and gradients of one BatchNorm2d over the whole batch."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mtl_split_core.distributed import AllReduceBatchNorm, World, sync_batch_norm


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _half(rank, port, x, w, grads, outputs, stats):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        bn = AllReduceBatchNorm(3, momentum=0.1)
        part = slice(rank * 2, rank * 2 + 2)
        xr = x[part].clone().requires_grad_(True)
        y = bn(xr)
        (y * w[part]).sum().backward()
        grads[part] = xr.grad
        outputs[part] = y.detach()
        weight_grad = bn.weight.grad.clone()
        dist.all_reduce(weight_grad)
        if rank == 0:
            stats[0], stats[1], stats[2] = bn.running_mean, bn.running_var, weight_grad
    finally:
        dist.destroy_process_group()


def test_two_halves_equal_one_whole_batch():
    torch.manual_seed(0)
    x, w = torch.randn(4, 3, 5, 5) * 3 + 1, torch.randn(4, 3, 5, 5)
    grads, outputs = torch.zeros_like(x).share_memory_(), torch.zeros_like(x).share_memory_()
    stats = torch.zeros(3, 3).share_memory_()
    mp.start_processes(_half, args=(_free_port(), x, w, grads, outputs, stats), nprocs=2,
                       start_method="fork")  # spawn could not import this test module
    whole = nn.BatchNorm2d(3, momentum=0.1)
    xs = x.clone().requires_grad_(True)
    y = whole(xs)
    (y * w).sum().backward()
    torch.testing.assert_close(outputs, y.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads, xs.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats[0], whole.running_mean)
    torch.testing.assert_close(stats[1], whole.running_var)
    torch.testing.assert_close(stats[2], whole.weight.grad)  # DDP sums, then averages


def test_conversion_keeps_state_and_one_process_is_plain_batch_norm():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    net[1].running_mean.fill_(0.5)
    net[2][0].weight.requires_grad_(False)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    converted = sync_batch_norm(net, "cpu")
    assert isinstance(converted[1], AllReduceBatchNorm)
    assert isinstance(converted[2][0], AllReduceBatchNorm)
    assert not converted[2][0].weight.requires_grad and not converted[1].training
    assert converted.state_dict().keys() == state.keys()
    assert all(torch.equal(converted.state_dict()[k], v) for k, v in state.items())
    x = torch.randn(2, 3, 4, 4)
    bn = AllReduceBatchNorm(3)
    plain = nn.BatchNorm2d(3)
    torch.testing.assert_close(bn(x), plain(x))  # no process group: BatchNorm2d itself
    assert World().main and World().size == 1
