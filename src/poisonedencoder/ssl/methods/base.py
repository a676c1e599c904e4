"""What every pre-training method shares: a backbone, a ``loss(x1, x2, pair_filter=None)`` on two
views, and an ``after_step(progress)`` hook for momentum updates. A method adds its heads and its
loss only."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ...core.settings import NoSettings, Settings
from ..models import build_backbone


@dataclass(frozen=True)
class Architecture:
    """The ``pretrain`` keys that shape every method's network: the backbone and SimCLR's
    projector (``projector``, ``projection_dim``) and temperature, which MoCo v2 shares."""

    backbone: str = "cnn7"
    width: int = 32
    projector: str = "mlp"
    projection_dim: int = 128
    temperature: float = 0.5

    @classmethod
    def of(cls, p: dict) -> "Architecture":
        """From a config's ``pretrain`` section."""
        return cls(p["backbone"], p["width"], p["projector"], p["projection_dim"], p["temperature"])


class SSLMethod(nn.Module):
    """Base of the pre-training methods. Subclasses set ``name`` and ``Settings`` (their own config
    section, ``pretrain.<name>``, a :class:`~poisonedencoder.core.settings.Settings` that declares and
    checks its keys; none when they use only the shared :class:`Architecture`), and implement
    ``loss``. A method is built from its architecture and its own parsed settings. A subclass with
    a ``name`` but no ``loss`` of its own is an error when it is defined.

    ``loss(x1, x2, pair_filter=None)``: ``pair_filter`` is an in-training defense's (see
    :mod:`..hooks`): given the two views' projections, which positive pairs enter the loss. A
    method that applies it sets ``drops_pairs = True``; :func:`..pretrain.pretrain` and config
    validation refuse a pair filter for the others, whose ``loss`` ignores the argument."""

    name: str = ""
    Settings: type[Settings] = NoSettings
    drops_pairs: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name and cls.loss is SSLMethod.loss:
            raise TypeError(f"SSL method {cls.name!r} ({cls.__qualname__}) must implement loss(x1, x2, pair_filter=None)")

    def __init__(self, arch: Architecture | None = None, settings: Settings | None = None):
        super().__init__()
        self.arch = arch if arch is not None else Architecture()
        self.settings = settings if settings is not None else self.Settings()
        self.backbone = build_backbone(arch.backbone, arch.width)
        self.feature_dim = self.backbone.feature_dim

    @classmethod
    def from_config(cls, p: dict) -> "SSLMethod":
        """From a config's ``pretrain`` section: its architecture and this method's own section."""
        return cls(Architecture.of(p), cls.Settings.parse(p.get(cls.name, {}), f"pretrain.{cls.name}"))

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
