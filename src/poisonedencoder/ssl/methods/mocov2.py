"""MoCo v2 (Chen et al., 2020): a query encoder trained against keys from a momentum encoder and
a first-in-first-out queue of past keys as negatives (InfoNCE, temperature 0.2).

Both views are queries and keys in turn (the symmetric loss that CIFAR reimplementations use),
and both views' keys enter the queue. Under torchrun the keys of all ranks are gathered before
they are queued, so every rank holds the same queue, the one a single process would hold. The
projector is SimCLR's (``pretrain.projector`` / ``projection_dim``)."""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from ...core.settings import Number, Range, Settings
from ..distributed import all_gather_with_grad, current
from ..losses import info_nce_queue
from .base import Architecture, SSLMethod, ema_update, frozen_copy
from .simclr import projector


class MoCoV2Settings(Settings):
    doc = "used when algorithm: mocov2 (projector / projection_dim as for SimCLR)"
    temperature: Annotated[Number, Range(0, 100, lo_open=True)] = 0.2
    momentum: Annotated[Number, Range(0, 1, lo_open=True)] = Field(0.99, description="key encoder EMA rate")
    queue_size: Annotated[int, Range(0, 1 << 24, lo_open=True)] = Field(4096, description="negatives kept from past batches")


class MoCoV2(SSLMethod):
    name = "mocov2"
    Settings = MoCoV2Settings

    def __init__(self, arch: Architecture | None = None, settings: MoCoV2Settings | None = None):
        super().__init__(arch, settings)
        a, c = self.arch, self.settings
        self.projector = projector(a.projector, self.feature_dim, a.projection_dim)
        self.key_backbone = frozen_copy(self.backbone)
        self.key_projector = frozen_copy(self.projector)
        self.temperature, self.momentum = c.temperature, c.momentum
        dim = a.projection_dim if a.projector != "none" else self.feature_dim
        self.register_buffer("queue", F.normalize(torch.randn(c.queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def loss(self, x1: torch.Tensor, x2: torch.Tensor, pair_filter=None) -> torch.Tensor:  # noqa: ARG002 (drops_pairs is False)
        q1, q2 = self.embed(x1, x2, self.projector)
        with torch.no_grad():
            k = self.key_projector(self.key_backbone(torch.cat([x1, x2], 0))).float()
            k1, k2 = F.normalize(k, dim=1).chunk(2)
        queue = self.queue.clone()
        loss = (info_nce_queue(q1, k2, queue, self.temperature) + info_nce_queue(q2, k1, queue, self.temperature)) / 2
        self.enqueue(torch.cat([k1, k2]) if not current().active else
                     torch.cat([all_gather_with_grad(k1), all_gather_with_grad(k2)]))
        return loss

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` over the oldest entries of the queue (first in, first out)."""
        n, size = len(keys), len(self.queue)
        # the pointer stays on the device: no read-back (a GPU sync) per step
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % size
        self.queue[idx[-size:]] = keys[-size:].to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    @torch.no_grad()
    def after_step(self, progress: float) -> None:  # noqa: ARG002 (constant momentum; BYOL uses progress)
        ema_update(self.key_backbone, self.backbone, self.momentum)
        ema_update(self.key_projector, self.projector, self.momentum)
