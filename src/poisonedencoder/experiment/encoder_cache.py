"""Finished encoders by what they were trained on.

A pre-training is a function of its inputs (every image, byte for byte and in order, grouped by
shape, with the normalization statistics), its settings (the ``pretrain`` section as it trains,
after an in-training defense's changes, with ``compile`` and ``memory_format`` as they resolve),
its seed, the device's kind and the resolved precision. :func:`content_key` hashes all of these;
an encoder finished under one key is kept in the shared cache under ``pretrained/<key>/`` and a
later pre-training with the same key takes it instead of training again. Two cases where a run
meets a key trained before:

- a filter that removes nothing (shape-matched poisoning inputs against ``aspect_ratio``): the
  poisoned encoder is the undefended one of the same attack;
- a filter that removes every poisoning input and no clean one: the poisoned encoder is the clean
  encoder of the seed.

Pre-training with an in-training defense's hooks (functions, not settings) is never keyed. Not in
the key: the CPU's thread count and the processor, as for the shared clean encoders (the cache is
one machine's).

Nothing kept is trusted on its word. Each entry holds ``entry.json``: the key it was made for and
the sha256 of every file it serves (:func:`seal`). Before an entry is served it is checked
(:func:`check`): an entry without that record, made for another key, or with a file missing,
added, linked or changed is set aside as ``<entry>.rejected-<time>`` with one line saying why, and
the encoder is trained again (and kept anew). Entries are copied, never hard-linked, into a run's
folder and back: editing a run's ``encoder.pt`` changes neither the cache nor another run. Every
entry is built under a temporary name and renamed, so an interrupted copy leaves no partial entry.
The check catches what changed after an entry was sealed (a planted or replaced file, a damaged
copy); whoever can write the cache can also write a matching record, so keep it where only its
users write.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..core.io import sha256_file, write_json, write_text
from ..core.folders import set_aside
from ..ssl.precision import resolve_precision
from ..ssl.speedups import resolve_compile, resolve_memory_format
from ..ssl.pretrain_set import PretrainSet

KEY_FILE = "content_key.txt"  # in an encoder's folder: the key it was published under
REUSED_FILE = "reused.json"   # in a run's encoder folder: it came from the cache, not from training
RECORD = "entry.json"         # in a kept entry: the key it was made for, the sha256 of each file it serves
_NOTES = (RECORD, KEY_FILE, REUSED_FILE)


def content_key(data: PretrainSet, p: dict, seed: int, device: str) -> str:
    """The hash of everything a pre-training's result depends on (see the module's docstring)."""
    h = hashlib.sha256()
    meta = {"pretrain": _as_run(p, device), "seed": int(seed), "device": torch.device(device).type,
            "precision": resolve_precision(p.get("precision", "auto"), device), "torch": torch.__version__,
            "groups": [list(g.shape) for g in data.groups]}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for g in data.groups:
        h.update(np.ascontiguousarray(g.cpu().numpy()).tobytes())
    for stat in (data.mean, data.std):
        h.update(np.asarray(torch.as_tensor(stat, dtype=torch.float64)).tobytes())
    return h.hexdigest()[:32]


def _as_run(p: dict, device: str) -> dict:
    """``p`` with ``compile`` and ``memory_format`` as they resolve on ``device``; the memory format
    only where it is not channels_last, which every encoder was trained in before the setting
    existed, so that their keys stay what they were."""
    p = dict(p)
    p["compile"] = resolve_compile(p.get("compile", "auto"), device)
    if resolve_memory_format(p.pop("memory_format", "auto")) != "channels_last":
        p["memory_format"] = "contiguous"
    return p


def _entry_files(d: Path) -> list[Path]:
    """The files an entry serves: every file under ``d`` but hidden ones, locks, temporary files,
    its record and the notes a run adds (``reused.json``, ``content_key.txt``), sorted."""
    out = []
    for f in sorted(d.rglob("*")):
        rel = f.relative_to(d)
        if any(part.startswith(".") for part in rel.parts) or f.suffix in (".lock", ".tmp") or rel.as_posix() in _NOTES:
            continue
        if f.is_symlink() or f.is_file():
            out.append(f)
    return out


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy what ``src`` serves into the new folder ``dst`` (copies, never links: a run's file edited
    later cannot change the cache, nor the cache a run)."""
    dst.mkdir(parents=True)
    for f in _entry_files(src):
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)


def seal(d: Path, key: str) -> None:
    """Write ``d/entry.json``: the key the entry was made for and the sha256 of every file it serves."""
    write_json(d / RECORD, {"key": key, "sha256": {f.relative_to(d).as_posix(): sha256_file(f) for f in _entry_files(d)}})


def check(d: Path, key: str) -> str | None:
    """Why the entry in ``d`` is not what was kept under ``key`` (None where it is): no record, a
    record for another key, or a file missing, added, linked or changed since it was sealed."""
    try:
        record = json.loads((d / RECORD).read_text())
        kept, made_for = dict(record["sha256"]), record["key"]
    except FileNotFoundError:
        return f"no {RECORD} (kept before entries were verified, or not by this toolkit)"
    except (OSError, ValueError, TypeError, KeyError):
        return f"its {RECORD} is not readable"
    if made_for != key:
        return f"it was made for key {str(made_for)[:40]!r}, not {key!r}"
    if "encoder.pt" not in kept:
        return "it holds no encoder.pt"
    found = {f.relative_to(d).as_posix(): f for f in _entry_files(d)}
    for rel in sorted(set(kept) | set(found)):
        if rel not in found:
            return f"{rel} is missing"
        if rel not in kept:
            return f"{rel} was added after it was kept"
        if found[rel].is_symlink():
            return f"{rel} is a symbolic link"
        if sha256_file(found[rel]) != kept[rel]:
            return f"{rel} is not the file that was kept (its sha256 differs)"
    return None


def sound(d: Path, key: str, log: Callable[[str], None]) -> bool:
    """Whether ``d`` holds a finished encoder that passes :func:`check` for ``key``; one that fails
    is set aside (:func:`~poisonedencoder.core.folders.set_aside`, one line), so the caller builds it again. Without an
    ``encoder.pt`` (none, or a training not finished yet) it is not sound and is left as it is."""
    if not (d / "encoder.pt").exists():
        return False
    why = check(d, key)
    if why is None:
        return True
    set_aside(d, why, log)
    return False


def publish(cache: Path, key: str, d: Path, log: Callable[[str], None] = print) -> None:
    """Keep a copy of the finished encoder in ``d`` under ``key``, sealed (:func:`seal`); a sound
    entry already kept is left as it is, one that fails its check is set aside and replaced."""
    dst = cache / "pretrained" / key
    if not sound(dst, key, log):
        if dst.exists():  # a folder without an encoder: no entry was ever renamed into place whole
            set_aside(dst, "it holds no encoder.pt", log)
        tmp = dst.parent / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _copy_tree(d, tmp)
        seal(tmp, key)
        try:
            tmp.rename(dst)
        except OSError:  # another process kept it first
            shutil.rmtree(tmp, ignore_errors=True)
    write_text(d / KEY_FILE, key + "\n")


def fetch(cache: Path, key: str, d: Path, log: Callable[[str], None] = print) -> bool:
    """Put a copy of the encoder kept under ``key`` into ``d`` (replacing an unfinished one there);
    False if none is kept, or if the entry (or the copy) fails :func:`check`: then the entry is set
    aside and the caller trains instead."""
    src = cache / "pretrained" / key
    if not sound(src, key, log):
        return False
    tmp = d.parent / f".{d.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _copy_tree(src, tmp)
    shutil.copyfile(src / RECORD, tmp / RECORD)
    why = check(tmp, key)  # the copy is what is served: a file changed while it was copied is caught here
    if why is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        set_aside(src, why, log)
        return False
    write_json(tmp / REUSED_FILE, {"content_key": key, "why": "the same inputs, settings, seed, device and "
                                   "precision as an encoder trained before",
                                   "sha256": json.loads((tmp / RECORD).read_text())["sha256"],
                                   "checked": f"every file matched the sha256 recorded when it was kept ({RECORD})"})
    write_text(tmp / KEY_FILE, key + "\n")
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return True


def published_key(d: Path) -> str | None:
    """The key the encoder in ``d`` was kept under, if it was."""
    f = d / KEY_FILE
    return f.read_text().strip() if f.exists() else None
