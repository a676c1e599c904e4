"""Pre-training methods by name (``pretrain.algorithm``). Adding one means adding one file with
an :class:`SSLMethod` subclass and listing it here."""
from __future__ import annotations

from .base import SSLMethod
from .byol import BYOL
from .mocov2 import MoCoV2
from .simclr import SimCLR
from .simsiam import SimSiam

METHODS: dict[str, type[SSLMethod]] = {m.name: m for m in (SimCLR, MoCoV2, BYOL, SimSiam)}


def build_method(p: dict) -> SSLMethod:
    """The method that ``p["algorithm"]`` names, built from the config's ``pretrain`` section."""
    from ...core.errors import UserError

    if p["algorithm"] not in METHODS:
        raise UserError(f"pretrain.algorithm: unknown algorithm {p['algorithm']!r}; choose one of {', '.join(METHODS)}")
    return METHODS[p["algorithm"]].from_config(p)


__all__ = ["METHODS", "SSLMethod", "SimCLR", "MoCoV2", "BYOL", "SimSiam", "build_method"]
