"""``pretrain.compile`` and ``pretrain.memory_format``: how the training step runs, resolved in
one place on the device, as :mod:`.precision` resolves ``precision``. Neither changes what a run
means (they are outside the fingerprints); both are logged and written into ``encoder.pt``.

* ``compile``: ``auto`` (the default) is ``torch.compile`` on CUDA and eager on the CPU (where
  it needs a C++ compiler, and the CPU path stays what it was); ``true`` / ``false`` force it.
* ``memory_format``: ``auto`` (the default) is ``channels_last`` on CUDA and on the CPU: what
  the loop did on every device before the setting existed, so a CPU run keeps its code path and
  its weights (docs/BENCHMARKS.md measures ``contiguous`` beside it); ``contiguous`` keeps the
  model and the views in NCHW order.
"""
from __future__ import annotations

import torch

COMPILE_CHOICES = ("auto", True, False)
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def _kind(device: str) -> str:
    return torch.device(device).type


def resolve_compile(setting: bool | str, device: str = "cpu") -> bool:
    """Whether the training step is compiled for ``pretrain.compile`` ``setting`` on ``device``."""
    if setting == "auto":
        return _kind(device) == "cuda"
    return bool(setting)


def resolve_memory_format(setting: str) -> str:
    """``"channels_last"`` or ``"contiguous"`` for ``pretrain.memory_format`` ``setting``, on any device."""
    if setting == "auto":
        return "channels_last"
    return setting


def torch_format(name: str) -> torch.memory_format:
    """The ``torch.memory_format`` of a resolved name (``channels_last`` or ``contiguous``)."""
    return _FORMATS[name]


def describe(compile_setting: bool | str, format_setting: str, device: str = "cpu") -> str:
    """How both resolved, for the run log: e.g. ``compile on (auto: cuda), memory format channels_last (auto)``."""
    on = resolve_compile(compile_setting, device)
    comp = f"compile {'on' if on else 'off'}" + (f" (auto: {_kind(device)})" if compile_setting == "auto" else "")
    fmt = f"memory format {resolve_memory_format(format_setting)}" + (" (auto)" if format_setting == "auto" else "")
    return f"{comp}, {fmt}"
