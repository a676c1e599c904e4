"""SimCLR (Chen et al., 2020): NT-Xent over both views of the batch; the paper's algorithm.

projector ``mlp`` (feature -> feature -> projection_dim), ``linear`` or ``none``; the shared keys
``pretrain.projector``, ``projection_dim`` and ``temperature`` set it."""
from __future__ import annotations

import torch
from torch import nn

from ..distributed import all_gather_with_grad, current
from ..hooks import PairFilter
from ..losses import nt_xent
from .base import Architecture, SSLMethod, mlp


def projector(kind: str, d: int, out: int) -> nn.Module:
    if kind == "mlp":
        return mlp([d, d, out])
    if kind == "linear":
        return nn.Linear(d, out)
    return nn.Identity()


class SimCLR(SSLMethod):
    name = "simclr"
    drops_pairs = True  # applies a pair filter (the defense drop_disagreeing)

    def __init__(self, arch: Architecture | None = None, settings=None):
        super().__init__(arch, settings)
        self.projector = projector(self.arch.projector, self.feature_dim, self.arch.projection_dim)
        self.temperature = self.arch.temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))

    def loss(self, x1: torch.Tensor, x2: torch.Tensor, pair_filter: PairFilter | None = None) -> torch.Tensor:
        """NT-Xent; ``pair_filter`` (an in-training defense's) leaves positive pairs out of the mean."""
        z1, z2 = self.embed(x1, x2, self.projector)
        env = current()
        if not env.active:
            keep = pair_filter(z1, z2) if pair_filter is not None else None
            return nt_xent(z1, z2, self.temperature, keep=keep)
        # negatives from every rank; gradients flow back to the rank that made them
        a1, a2 = all_gather_with_grad(z1), all_gather_with_grad(z2)
        keep = pair_filter(z1, z2, a1.detach(), a2.detach()) if pair_filter is not None else None
        return nt_xent(z1, z2, self.temperature, a1, a2, offset=env.rank * len(z1), keep=keep)
