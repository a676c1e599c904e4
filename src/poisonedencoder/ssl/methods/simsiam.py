"""SimSiam (Chen & He, 2021): each view's prediction regresses the other view's projection under
a stop-gradient; no negatives, no momentum network.

Heads as in SimSiam's CIFAR setting: projector feature -> feature -> output with batch norm
after every layer, predictor output -> hidden -> output with a bottleneck (SimSiam: 2048 and
512; ``pretrain.simsiam`` sets them)."""
from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from ...core.settings import Range, Settings
from ..losses import negative_cosine
from .base import Architecture, SSLMethod, mlp


class SimSiamSettings(Settings):
    output_dim: Annotated[int, Range(0, 1 << 20, lo_open=True)] = Field(512, description="projection size (SimSiam: 2048)")
    hidden_dim: Annotated[int, Range(0, 1 << 20, lo_open=True)] = Field(128, description="predictor bottleneck (SimSiam: 512)")


class SimSiam(SSLMethod):
    name = "simsiam"
    Settings = SimSiamSettings

    def __init__(self, arch: Architecture | None = None, settings: SimSiamSettings | None = None):
        super().__init__(arch, settings)
        c = self.settings
        self.projector = mlp([self.feature_dim, self.feature_dim, c.output_dim], last_bn=True)
        self.predictor = mlp([c.output_dim, c.hidden_dim, c.output_dim])

    def loss(self, x1: torch.Tensor, x2: torch.Tensor, pair_filter=None) -> torch.Tensor:  # noqa: ARG002 (drops_pairs is False)
        z1, z2 = self.embed(x1, x2, self.projector)
        p1, p2 = self.predictor(torch.cat([z1, z2])).float().chunk(2)
        return (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2
