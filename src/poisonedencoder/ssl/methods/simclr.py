"""SimCLR (Chen et al., 2020): NT-Xent over both views of the batch; the paper's algorithm.

projector ``mlp`` (feature -> feature -> projection_dim), ``linear`` or ``none``; the shared keys
``pretrain.projector``, ``projection_dim`` and ``temperature`` set it."""
from __future__ import annotations

import torch
from torch import nn

from ..distributed import all_gather_with_grad, current
from ..losses import nt_xent
from .base import SSLMethod, mlp


def projector(kind: str, d: int, out: int) -> nn.Module:
    if kind == "mlp":
        return mlp([d, d, out])
    if kind == "linear":
        return nn.Linear(d, out)
    return nn.Identity()


class SimCLR(SSLMethod):
    name = "simclr"

    def __init__(self, p: dict):
        super().__init__(p)
        self.projector = projector(p["projector"], self.feature_dim, p["projection_dim"])
        self.temperature = p["temperature"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.embed(x1, x2, self.projector)
        env = current()
        if not env.active:
            return nt_xent(z1, z2, self.temperature)
        # negatives from every rank; gradients flow back to the rank that made them
        return nt_xent(z1, z2, self.temperature, all_gather_with_grad(z1), all_gather_with_grad(z2),
                       offset=env.rank * len(z1))
