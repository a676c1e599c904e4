"""BYOL (Grill et al., 2020): an online network with a predictor regresses the projection of the
other view made by a target network, the exponential moving average of the online one. No
negatives. The EMA rate follows BYOL's cosine schedule from ``ema_base`` to 1 over training.

Heads: projector feature -> hidden -> output and predictor output -> hidden -> output, with
batch norm and ReLU inside (BYOL's are 4096 -> 256; ``pretrain.byol`` scales them for small
backbones)."""
from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field

from ...core.settings import Number, Range, Settings
from ..losses import negative_cosine
from .base import Architecture, SSLMethod, ema_update, frozen_copy, mlp


def byol_momentum(base: float, progress: float) -> float:
    """BYOL's schedule: ``1 - (1 - base) * (cos(pi * progress) + 1) / 2``."""
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


class BYOLSettings(Settings):
    hidden_dim: Annotated[int, Range(0, 1 << 20, lo_open=True)] = Field(512, description="projector and predictor hidden width (BYOL: 4096)")
    output_dim: Annotated[int, Range(0, 1 << 20, lo_open=True)] = Field(128, description="projection size (BYOL: 256)")
    ema_base: Annotated[Number, Range(0, 1, lo_open=True)] = Field(0.99, description="target EMA rate at the start; cosine schedule to 1")


class BYOL(SSLMethod):
    name = "byol"
    Settings = BYOLSettings

    def __init__(self, arch: Architecture | None = None, settings: BYOLSettings | None = None):
        super().__init__(arch, settings)
        c = self.settings
        self.projector = mlp([self.feature_dim, c.hidden_dim, c.output_dim])
        self.predictor = mlp([c.output_dim, c.hidden_dim, c.output_dim])
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)
        self.ema_base = c.ema_base

    def loss(self, x1: torch.Tensor, x2: torch.Tensor, pair_filter=None) -> torch.Tensor:  # noqa: ARG002 (drops_pairs is False)
        z1, z2 = self.embed(x1, x2, self.projector)
        p = self.predictor(torch.cat([z1, z2])).float()
        p1, p2 = p.chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projector(self.target_backbone(torch.cat([x1, x2], 0))).float().chunk(2)
        # 2 - 2 cos, symmetric over the views
        return 2 + (negative_cosine(p1, t2) + negative_cosine(p2, t1))

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        m = byol_momentum(self.ema_base, progress)
        ema_update(self.target_backbone, self.backbone, m)
        ema_update(self.target_projector, self.projector, m)
