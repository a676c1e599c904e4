"""poisonedencoder: the PoisonedEncoder data-poisoning attack on contrastive pre-training.

The Python API (``import poisonedencoder as pe``; :mod:`poisonedencoder.api`):
``pe.load_config``, the stages ``pe.craft``, ``pe.pretrain``, ``pe.evaluate``, the whole run
``pe.run``, encoders trained elsewhere with ``pe.load_encoder`` (``pe.load_encoders``) and
``pe.evaluate_encoder``, and ``pe.Experiment`` for the
stages one by one. They are imported on first use, so ``import poisonedencoder`` (and
``import poisonedencoder.config``) stays cheap: no torch until a stage needs it.
"""
from __future__ import annotations

import importlib

from . import _moved

__version__ = "0.1.0"

_LAZY = {
    "load_config": "api", "craft": "api", "pretrain": "api", "evaluate": "api", "evaluate_encoder": "api",
    "load_encoder": "api", "load_encoders": "api", "run": "api", "Experiment": "experiment.pipeline", "UserError": "core.errors",
}
__all__ = ["__version__", *_LAZY]


_moved.install()


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # the next access is a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
