"""Data-parallel pre-training across processes (``torchrun``): process-group setup, the
differentiable all-gather of projections (negatives from every rank), and batch norm over
the global batch.

Launch any pre-training command under ``torchrun``; the global batch is ``pretrain.batch_size``
whatever the number of processes, each rank takes a contiguous share of it, and the
augmentation parameters of the global batch are drawn identically on every rank. So a run on
``k`` processes computes what a run on one process computes, up to floating-point rounding
(``tests/ssl/test_distributed.py`` checks this with two CPU processes on gloo).

Batch norm: on CUDA, PyTorch's ``SyncBatchNorm``; elsewhere (gloo on CPU, where ``SyncBatchNorm``
refuses to run) :class:`GlobalBatchNorm`, which all-reduces per-channel sums with gradients.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..core.errors import UserError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def current() -> DistEnv:
    """The process group this process belongs to (a single process when none is set up)."""
    if dist.is_available() and dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistEnv()


def launched_by_torchrun(environ=os.environ) -> bool:
    return int(environ.get("WORLD_SIZE", "1") or 1) > 1


def init_from_env(device: str, environ=os.environ) -> tuple[DistEnv, str]:
    """Join the process group that ``torchrun`` describes in the environment.

    Returns the environment and this rank's device (``cuda`` becomes ``cuda:LOCAL_RANK``).
    Backend: NCCL on CUDA, gloo on CPU. Mismatches raise :class:`UserError`.
    """
    if not launched_by_torchrun(environ):
        return DistEnv(), device
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in environ]
    if missing:
        raise UserError(f"WORLD_SIZE is set but {', '.join(missing)} is not: launch multi-process runs with torchrun")
    world, rank, local = int(environ["WORLD_SIZE"]), int(environ["RANK"]), int(environ["LOCAL_RANK"])
    if not 0 <= rank < world:
        raise UserError(f"RANK {rank} is outside WORLD_SIZE {world}")
    cuda = device.startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} requested but CUDA is not available")
        n = torch.cuda.device_count()
        if local >= n:
            raise UserError(f"torchrun started more processes on this node than it has GPUs ({n}): "
                            f"use --nproc_per_node {n} or fewer")
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    if dist.get_world_size() != world:
        raise UserError(f"process group has {dist.get_world_size()} ranks but WORLD_SIZE is {world}")
    return DistEnv(rank, world, local), device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if current().active:
        dist.barrier()


class _AllGather(torch.autograd.Function):
    """All-gather along dim 0. Backward: every rank's loss depends on every share, so the
    incoming gradients are summed over ranks and each rank keeps the rows of its own share."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum is the sum over ranks of the incoming gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004 (autograd.Function signature)
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004 (autograd.Function signature)
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every rank) from all ranks along dim 0, in rank order;
    gradients flow back to each rank's own share, summed over every rank's loss."""
    return _AllGather.apply(x) if current().active else x


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x) if current().active else x


def mean_over_ranks(value: float) -> float:
    """The mean of a Python number over ranks (for logging the global loss)."""
    env = current()
    if not env.active:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item()) / env.world_size


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch over all ranks.

    Works on any backend (gloo on CPU included). With one process it is ``BatchNorm``. The
    state dict is a plain ``BatchNorm``'s, so saved weights load into the unconverted model.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and current().active):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        local_count = torch.full((1,), xf.numel() / xf.shape[1], dtype=xf.dtype, device=xf.device)
        s = all_reduce_sum_with_grad(torch.cat([xf.sum(dims), local_count]))
        count, mean = s[-1], s[:-1] / s[-1]
        xc = xf - mean.view(shape)
        var = all_reduce_sum_with_grad((xc * xc).sum(dims)) / count
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * count / (count - 1).clamp(min=1)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y.to(x.dtype)


def convert_batchnorm(module: nn.Module, device: str) -> nn.Module:
    """Replace every batch norm in ``module`` by one that normalises over the global batch."""
    if device.startswith("cuda"):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        out.load_state_dict(module.state_dict())
        for q_new, q_old in zip(out.parameters(), module.parameters(), strict=True):
            q_new.requires_grad_(q_old.requires_grad)  # momentum networks stay frozen
        out.train(module.training)
        out = out.to(next(iter(module.state_dict().values())).device) if module.state_dict() else out
    for name, child in module.named_children():
        out.add_module(name, convert_batchnorm(child, device))
    return out
