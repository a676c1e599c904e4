"""SimCLR: backbone, projection head, NT-Xent.

projector ``mlp`` (SimCLR's: feature -> feature -> projection_dim, BN and ReLU between),
``linear`` (feature -> projection_dim) or ``none`` (the loss acts on the backbone feature).
"""
from __future__ import annotations

import torch
from torch import nn

from .distributed import all_gather_with_grad, current
from .losses import nt_xent
from .models import build_backbone


class SimCLR(nn.Module):
    def __init__(self, backbone: str = "cnn7", width: int = 32, projection_dim: int = 128,
                 temperature: float = 0.5, projector: str = "mlp"):
        super().__init__()
        self.backbone = build_backbone(backbone, width)
        d = self.backbone.feature_dim
        if projector == "mlp":
            self.projector = nn.Sequential(nn.Linear(d, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
                                           nn.Linear(d, projection_dim))
        elif projector == "linear":
            self.projector = nn.Linear(d, projection_dim)
        else:
            self.projector = nn.Identity()
        self.temperature = temperature

    @classmethod
    def from_config(cls, p: dict) -> "SimCLR":
        return cls(p["backbone"], p["width"], p["projection_dim"], p["temperature"], p["projector"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        z = self(torch.cat([x1, x2], 0)).float()  # the loss in fp32, also under bf16 autocast
        z1, z2 = z.chunk(2)
        env = current()
        if not env.active:
            return nt_xent(z1, z2, self.temperature)
        # negatives from every rank; gradients flow back to the rank that made them
        return nt_xent(z1, z2, self.temperature, all_gather_with_grad(z1), all_gather_with_grad(z2),
                       offset=env.rank * len(z1))
