"""One training step: the optimizer step on two views, and the loss as a module for
DistributedDataParallel and torch.compile."""
from __future__ import annotations

import torch

from .hooks import PairFilter
from .methods import SSLMethod


class _ContrastiveStep(torch.nn.Module):
    """The loss as a module's forward, so DistributedDataParallel sees every step."""

    def __init__(self, model: SSLMethod, pair_filter: PairFilter | None = None):
        super().__init__()
        self.model, self.pair_filter = model, pair_filter

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x1, x2, self.pair_filter)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x1: torch.Tensor, x2: torch.Tensor,
               device: str = "cpu", bf16: bool = False, pair_filter: PairFilter | None = None,
               memory_format: torch.memory_format = torch.channels_last) -> torch.Tensor:
    """One optimizer step on two views: in ``memory_format`` (the model's) on ``device``, forward under bf16 autocast
    when asked (the loss itself stays fp32), backward, step. Returns the loss.

    ``model`` is an :class:`SSLMethod` (``pair_filter`` goes to its loss) or a
    (DistributedDataParallel-wrapped) ``_ContrastiveStep``, which holds its own."""
    x1 = x1.to(device, non_blocking=True).contiguous(memory_format=memory_format)
    x2 = x2.to(device, non_blocking=True).contiguous(memory_format=memory_format)
    with torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model.loss(x1, x2, pair_filter) if isinstance(model, SSLMethod) else model(x1, x2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss
