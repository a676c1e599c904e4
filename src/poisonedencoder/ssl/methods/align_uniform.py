"""Alignment and uniformity (Wang & Isola, 2020; a toy method, to show what adding one takes):
``align`` pulls the two views' normalised projections together, ``uniform`` spreads the batch
over the sphere (log of the mean Gaussian potential); no negatives in the softmax sense."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import SSLMethod, mlp, positive


class AlignUniform(SSLMethod):
    name = "align_uniform"
    defaults = {"alpha": 2.0, "t": 2.0, "weight": 1.0}
    doc = {"alpha": "exponent of the alignment distance", "t": "uniformity temperature",
           "weight": "weight of the uniformity term"}

    @classmethod
    def check(cls, s: dict) -> None:
        for key in ("alpha", "t", "weight"):
            positive(s, key, cls.name, 100)

    def __init__(self, p: dict):
        super().__init__(p)
        self.projector = mlp([self.feature_dim, self.feature_dim, p["projection_dim"]])
        self.s = p["align_uniform"]

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        z1, z2 = (F.normalize(z, dim=1) for z in self.embed(x1, x2, self.projector))
        align = (z1 - z2).norm(dim=1).pow(self.s["alpha"]).mean()
        uniform = sum(torch.pdist(z).pow(2).mul(-self.s["t"]).exp().mean().log() for z in (z1, z2)) / 2
        return align + self.s["weight"] * uniform
