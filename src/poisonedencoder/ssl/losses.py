"""Contrastive losses as pure functions."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
            z1_all: torch.Tensor | None = None, z2_all: torch.Tensor | None = None, offset: int = 0,
            keep: torch.Tensor | None = None) -> torch.Tensor:
    """NT-Xent (SimCLR) loss of two views ``z1, z2`` of shape ``(N, D)``.

    For each of the 2N projections, the positive is the other view of the same image and
    the 2N-2 other projections are negatives; cosine similarities divided by
    ``temperature`` feed a cross-entropy, averaged over all 2N anchors.

    Data-parallel: ``z1_all, z2_all`` ``(M, D)`` are both views of the whole global batch (all
    ranks, in rank order) and this rank's rows start at ``offset``. The local anchors are then
    contrasted with all 2M-1 other projections; the mean of the ranks' losses is the loss of the
    global batch.

    ``keep`` (bool ``(N,)``, optional) leaves pairs out of the mean (their anchors contribute no
    loss; their projections still serve as negatives).

    >>> z = torch.eye(2)
    >>> round(float(nt_xent(z, z, 1.0)), 4)  # log(1 + 2/e): positive at cos 1, two negatives at cos 0
    0.5514
    """
    n = z1.shape[0]
    anchors = F.normalize(torch.cat([z1, z2], 0), dim=1)
    if z1_all is None:
        cand, m = anchors, n
    else:
        cand, m = F.normalize(torch.cat([z1_all, z2_all], 0), dim=1), z1_all.shape[0]
    sim = anchors @ cand.t() / temperature
    i = torch.arange(n, device=sim.device) + offset
    self_idx = torch.cat([i, i + m])
    sim[torch.arange(2 * n, device=sim.device), self_idx] = float("-inf")
    if keep is None:
        return F.cross_entropy(sim, torch.cat([i + m, i]))
    per_anchor = F.cross_entropy(sim, torch.cat([i + m, i]), reduction="none")
    w = torch.cat([keep, keep]).to(per_anchor.dtype)
    return (per_anchor * w).sum() / w.sum().clamp(min=1)


def agreeing_pairs(z1: torch.Tensor, z2: torch.Tensor, drop_fraction: float,
                   all_cos: torch.Tensor | None = None) -> torch.Tensor:
    """In-processing defense: keep (bool ``(N,)``) the positive pairs whose two views agree, dropping
    the ``drop_fraction`` with the lowest cosine. A poisoning input's crops that show the target in
    one view and the reference in the other disagree most. ``all_cos``: the cosines of the whole
    global batch, so that every rank uses the same threshold.

    >>> z1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> agreeing_pairs(z1, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), 0.25).tolist()
    [True, False, True, True]
    """
    with torch.no_grad():
        cos = F.cosine_similarity(z1.float(), z2.float(), dim=1)
        ref = cos if all_cos is None else all_cos
        k = int(round(drop_fraction * len(ref)))
        if k == 0:
            return torch.ones_like(cos, dtype=torch.bool)
        threshold = ref.sort().values[k - 1]
        return cos > threshold


def info_nce_queue(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE of MoCo: each query ``q[i]`` ``(N, D)`` against its positive key ``k[i]`` and the
    ``K`` negatives in ``queue`` ``(K, D)``; cosine similarities over ``temperature``, cross-entropy
    with the positive at index 0. Keys and queue get no gradient.

    >>> q = torch.tensor([[1.0, 0.0]])
    >>> round(float(info_nce_queue(q, q, torch.tensor([[0.0, 1.0]]), 1.0)), 4)  # log(1 + 1/e)
    0.3133
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1).detach()
    queue = F.normalize(queue, dim=1).detach()
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``-mean_i cos(p_i, z_i)`` with a stop-gradient on ``z``: SimSiam's D, and BYOL's loss is
    ``2 + 2 * negative_cosine`` (= 2 - 2 cos).

    >>> round(float(negative_cosine(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]]))), 4)
    -0.7071
    """
    return -(F.normalize(p, dim=1) * F.normalize(z.detach(), dim=1)).sum(1).mean()
