"""Finished encoders by what they were trained on.

A pre-training is a function of its inputs (every image, byte for byte and in order, grouped by
shape, with the normalization statistics), its settings (the ``pretrain`` section as it trains,
after an in-training defense's changes), its seed, the device's kind and the resolved precision.
:func:`content_key` hashes all of these; an encoder finished under one key is kept in the shared
cache under ``pretrained/<key>/`` and a later pre-training with the same key takes it instead of
training again. Two cases where a run meets a key trained before:

- a filter that removes nothing (shape-matched poisoning inputs against ``aspect_ratio``): the
  poisoned encoder is the undefended one of the same attack;
- a filter that removes every poisoning input and no clean one: the poisoned encoder is the clean
  encoder of the seed.

Pre-training with an in-training defense's hooks (functions, not settings) is never keyed. Not in
the key: the CPU's thread count and the processor, as for the shared clean encoders (the cache is
one machine's). Files are hard-linked (copied where a link fails), so a reused encoder costs no
disk; every file is written under a temporary name and renamed, so an interrupted copy leaves no
partial entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from .ssl.precision import resolve_precision
from .ssl.pretrain_set import PretrainSet

KEY_FILE = "content_key.txt"  # in an encoder's folder: the key it was published under
REUSED_FILE = "reused.json"   # in a run's encoder folder: it came from the cache, not from training


def content_key(data: PretrainSet, p: dict, seed: int, device: str) -> str:
    """The hash of everything a pre-training's result depends on (see the module's docstring)."""
    h = hashlib.sha256()
    meta = {"pretrain": p, "seed": int(seed), "device": torch.device(device).type,
            "precision": resolve_precision(p.get("precision", "auto"), device), "torch": torch.__version__,
            "groups": [list(g.shape) for g in data.groups]}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for g in data.groups:
        h.update(np.ascontiguousarray(g.cpu().numpy()).tobytes())
    for stat in (data.mean, data.std):
        h.update(np.asarray(torch.as_tensor(stat, dtype=torch.float64)).tobytes())
    return h.hexdigest()[:32]


def _link_tree(src: Path, dst: Path, skip: tuple[str, ...]) -> None:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name in skip or f.name.startswith(".") or f.suffix in (".lock", ".tmp"):
            continue
        if f.is_dir():
            _link_tree(f, dst / f.name, skip)
            continue
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copy2(f, dst / f.name)


def publish(cache: Path, key: str, d: Path) -> None:
    """Keep the finished encoder in ``d`` under ``key`` (once; a key already kept is left as it is)."""
    dst = cache / "pretrained" / key
    if not (dst / "encoder.pt").exists():
        tmp = dst.parent / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _link_tree(d, tmp, skip=(REUSED_FILE, KEY_FILE))
        try:
            tmp.rename(dst)
        except OSError:  # another process kept it first
            shutil.rmtree(tmp, ignore_errors=True)
    _write(d / KEY_FILE, key + "\n")


def fetch(cache: Path, key: str, d: Path) -> bool:
    """Put the encoder kept under ``key`` into ``d`` (replacing an unfinished one there); False if
    none is kept."""
    src = cache / "pretrained" / key
    if not (src / "encoder.pt").exists():
        return False
    tmp = d.parent / f".{d.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _link_tree(src, tmp, skip=(REUSED_FILE, KEY_FILE))
    _write(tmp / REUSED_FILE, json.dumps({"content_key": key, "why": "the same inputs, settings, seed, device and "
                                          "precision as an encoder trained before"}, indent=1) + "\n")
    _write(tmp / KEY_FILE, key + "\n")
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return True


def published_key(d: Path) -> str | None:
    """The key the encoder in ``d`` was kept under, if it was."""
    f = d / KEY_FILE
    return f.read_text().strip() if f.exists() else None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
