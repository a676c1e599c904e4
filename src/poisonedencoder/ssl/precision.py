"""``pretrain.precision``: ``auto`` (the default), ``bf16`` or ``fp32``, resolved in one place.

``auto`` is bf16 autocast where the hardware computes bf16 natively, fp32 elsewhere:

* CUDA: bf16 when ``torch.cuda.is_bf16_supported()`` (Ampere and later);
* CPU: bf16 when the processor has ``avx512_bf16`` or ``amx_bf16`` (read from
  ``/proc/cpuinfo``; elsewhere, and on other architectures, none is assumed). Without them
  oneDNN emulates bf16 and autocast is slower than fp32: about 8x on an AMD EPYC with avx2 only
  (`cpu` preset, about 80 s against 10 s per epoch), so an explicit ``bf16`` there prints one
  warning line.
"""
from __future__ import annotations

import sys
from functools import lru_cache

import torch

CHOICES = ("auto", "bf16", "fp32")
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_warned: set[tuple[str, str]] = set()


@lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native-bf16 instruction flags this CPU reports in ``/proc/cpuinfo`` (empty if none or unknown)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return tuple(x for x in _BF16_FLAGS if x in flags)
    except OSError:
        pass
    return ()


def cpu_name() -> str:
    """This processor's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere), for
    naming the machine beside a measurement."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bf16 natively (so that bf16 autocast is faster than fp32)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(cpu_bf16_flags())


def resolve_precision(setting: str, device: str = "cpu", warn=None) -> str:
    """``"bf16"`` or ``"fp32"`` for ``pretrain.precision`` ``setting`` on ``device``.

    ``warn``: called once per process and device kind with a one-line warning when ``bf16`` is
    asked for on a CPU without native bf16."""
    if setting == "fp32":
        return "fp32"
    native = native_bf16(device)
    if setting == "auto":
        return "bf16" if native else "fp32"
    kind = torch.device(device).type
    if setting == "bf16" and not native and warn is not None and (kind, setting) not in _warned:
        _warned.add((kind, setting))
        what = "this CPU has no avx512_bf16 or amx_bf16 instructions" if kind == "cpu" else "this GPU has no native bf16"
        warn(f"warning: pretrain.precision bf16: {what}, so bf16 is emulated and much slower than fp32 "
             "(about 8x on an AMD EPYC with avx2 only); use precision auto or fp32")
    return "bf16"


def describe(setting: str, device: str = "cpu") -> str:
    """How the setting resolved, for the run log: e.g. ``bf16 (auto: avx512_bf16, amx_bf16)``."""
    resolved = resolve_precision(setting, device)
    if setting != "auto":
        return resolved
    if torch.device(device).type == "cuda":
        why = "CUDA bf16" if resolved == "bf16" else "no CUDA bf16"
    else:
        why = ", ".join(cpu_bf16_flags()) or "no avx512_bf16/amx_bf16 on this CPU"
    return f"{resolved} (auto: {why})"


def stderr_warning(line: str) -> None:
    print(line, file=sys.stderr)
