"""Contrastive losses as pure functions."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (SimCLR) loss of two views ``z1, z2`` of shape ``(N, D)``.

    For each of the 2N projections, the positive is the other view of the same image and
    the 2N-2 other projections are negatives; cosine similarities divided by
    ``temperature`` feed a cross-entropy, averaged over all 2N anchors.

    >>> z = torch.eye(2)
    >>> round(float(nt_xent(z, z, 1.0)), 4)  # positives at cos 1, negatives at cos 0
    0.9048
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], 0), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)
