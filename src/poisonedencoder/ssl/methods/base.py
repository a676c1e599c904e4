"""What every pre-training method shares: a backbone, a ``loss(x1, x2, pair_filter=None)`` on two
views, and an ``after_step(progress)`` hook for momentum updates. A method adds its heads and its
loss only."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..models import build_backbone


class SSLMethod(nn.Module):
    """Base of the pre-training methods. Subclasses set ``name`` and ``defaults`` (their own config
    section, ``pretrain.<name>``; empty when they use only shared keys; ``doc`` describes them),
    check that section in the classmethod :meth:`check`, and implement ``loss``. A subclass with a
    ``name`` but no ``loss`` of its own is an error when it is defined.

    ``loss(x1, x2, pair_filter=None)``: ``pair_filter`` is an in-training defense's (see
    :mod:`..hooks`): given the two views' projections, which positive pairs enter the loss. A
    method that applies it sets ``drops_pairs = True``; :func:`..pretrain.pretrain` and config
    validation refuse a pair filter for the others, whose ``loss`` ignores the argument."""

    name: str = ""
    defaults: dict = {}
    doc: dict[str, str] = {}
    drops_pairs: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name and cls.loss is SSLMethod.loss:
            raise TypeError(f"SSL method {cls.name!r} ({cls.__qualname__}) must implement loss(x1, x2, pair_filter=None)")

    @classmethod
    def check(cls, s: dict) -> None:
        """Raise :class:`UserError` for a bad setting of ``pretrain.<name>`` (``s``)."""

    def __init__(self, p: dict):
        super().__init__()
        self.backbone = build_backbone(p["backbone"], p["width"])
        self.feature_dim = self.backbone.feature_dim

    @classmethod
    def from_config(cls, p: dict) -> "SSLMethod":
        return cls(p)

    def loss(self, x1: torch.Tensor, x2: torch.Tensor, pair_filter=None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """Called after every optimizer step; ``progress`` runs from 0 to 1 over the training."""

    def embed(self, x1: torch.Tensor, x2: torch.Tensor, head: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """``head(backbone(.))`` of both views in one batch (batch norm sees both, as in SimCLR),
        returned in fp32 also under bf16 autocast."""
        z = head(self.backbone(torch.cat([x1, x2], 0))).float()
        return z.chunk(2)


def positive(s: dict, key: str, name: str, hi: float = 100, integer: bool = False) -> None:
    """``pretrain.<name>.<key>`` is in (0, hi] (an integer >= 1 if ``integer``)."""
    from ...errors import check_number

    check_number(s[key], f"pretrain.{name}.{key}", 0, hi, integer, lo_open=True)


def mlp(dims: list[int], last_bn: bool = False) -> nn.Sequential:
    """Linear layers with BatchNorm and ReLU between them (and an affine-free BatchNorm at the end
    when ``last_bn``), as the SSL methods' projectors and predictors use."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        last = i == len(dims) - 2
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=last and not last_bn))
        if not last:
            layers += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(dims[i + 1], affine=False))
    return nn.Sequential(*layers)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy for a momentum (EMA) network: no gradients; its weights follow :func:`ema_update`."""
    m = copy.deepcopy(module)
    for q in m.parameters():
        q.requires_grad_(False)
    return m


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for every parameter; buffers
    (batch-norm statistics) are copied."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)
