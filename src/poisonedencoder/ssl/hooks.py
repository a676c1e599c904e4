"""The two points where an in-training defense acts on the pre-training loop, without settings of
the core (:func:`.pretrain.pretrain` takes them as arguments; a defense builds them):

* a **view policy** draws the second view's crop boxes from the first view's:
  ``policy(first, height, width, aug, generator) -> boxes``, boxes ``(n, 4)`` as ``x0, y0, x1, y1``
  in pixels for ``n`` images of ``height`` x ``width``; ``aug`` is the loop's
  :class:`~.augment.AugmentParams` and ``generator`` the one the loop draws every view from (the
  batched augmentation only: the per-sample pipeline draws its views independently);
* a **pair filter** says which positive pairs enter the loss:
  ``pair_filter(z1, z2, z1_all=None, z2_all=None) -> keep``, ``keep`` a bool (or weight) tensor
  ``(N,)`` over this process's pairs; ``z1, z2`` are the two views' projections ``(N, D)``, and
  under torchrun ``z1_all, z2_all`` are those of the whole global batch (so that every rank
  decides alike). Methods whose ``drops_pairs`` is true apply it (SimCLR).

A hook may carry ``record``: a mapping written into ``encoder.pt``'s ``"views"`` record, so an
encoder says how its views were made. Plain functions work too (no record).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

ViewPolicy = Callable[..., torch.Tensor]
PairFilter = Callable[..., Optional[torch.Tensor]]

VIEWS_RECORD: dict[str, Any] = {"view_overlap": 0.0, "drop_disagreeing": 0.0}
"""``encoder.pt``'s ``"views"`` record beside ``crop_scale``, when no hook fills it in: the record
keeps the keys it had when these two were ``pretrain`` settings, so that encoders written before
and after read alike; the hooks of overlapping_views and drop_disagreeing set them."""


def views_record(p: dict, *hooks: Any) -> dict:
    """``encoder.pt``'s ``"views"``: the crop scale, :data:`VIEWS_RECORD`, and each hook's ``record``."""
    out = {"crop_scale": p["crop_scale"], **VIEWS_RECORD}
    for h in hooks:
        out.update(getattr(h, "record", None) or {})
    return out


def hook_name(hook: Any, kind: str) -> str:
    """How an error names a hook: its ``source`` (the defense that made it), else its kind."""
    source = getattr(hook, "source", None)
    return f"defense {source}" if source else kind
