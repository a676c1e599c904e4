"""Which files of a scanned folder are poisoning inputs, from a manifest (``scan --manifest PATH``).

A manifest is one of:

- the toolkit's craft manifest, ``RUN/poisons/manifest.json`` (or one of an exported image folder,
  ``DIR/manifest.json`` of ``craft --export-imagefolder DIR``): a JSON object whose
  ``poisoning_inputs`` entries name their ``file``;
- a JSON list of paths (or of objects with a ``file``);
- a text file, one path a line (blank lines and lines starting with ``#`` left out).

A listed path is matched to a file of FOLDER in two ways, the first that finds it: (1) where it
lies: the path taken relative to the manifest's own folder (the toolkit's manifests name their
files so), when that is a file of FOLDER; (2) as a path relative to FOLDER (``a/b.png``). Every
other scanned file is clean. A manifest none of whose files are in FOLDER is an error (the wrong
manifest, or the wrong folder); listed files that are not found are counted in the report.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..core.errors import UserError
from .folder import Folder, shown

MAX_MANIFEST_BYTES = 64 << 20
RULE = ("a listed path matches a FOLDER file where it lies (relative to the manifest's folder), else as a path "
        "relative to FOLDER")


def listed_paths(manifest: str | Path) -> tuple[list[str], str]:
    """The paths a manifest lists, and its kind (``poisonedencoder-poisons``, ``json list``, ``text``)."""
    path = Path(manifest).expanduser()
    if not path.is_file():
        raise UserError(f"--manifest {path} is not a file")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise UserError(f"--manifest {path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB: not a manifest")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise UserError(f"--manifest {path} cannot be read as UTF-8 text ({type(e).__name__})") from e
    if text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise UserError(f"--manifest {path} is not valid JSON ({str(e)[:120]})") from e
        kind = "json list"
        if isinstance(data, dict):
            if not isinstance(data.get("poisoning_inputs"), list):
                raise UserError(f"--manifest {path} is a JSON object without a 'poisoning_inputs' list (the toolkit's "
                                "poisons/manifest.json has one)")
            data, kind = data["poisoning_inputs"], str(data.get("format", "poisonedencoder-poisons")).split("/")[0]
        files = [e.get("file") if isinstance(e, dict) else e for e in data]
        if not all(isinstance(f, str) and f for f in files):
            raise UserError(f"--manifest {path}: every entry must be a path (or an object with a 'file' path)")
        return files, kind
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")], "text"


def ground_truth(manifest: str | Path, folder: Folder) -> tuple[np.ndarray, dict]:
    """Per scanned image of ``folder``, whether ``manifest`` lists it, and what was matched (module
    docstring): ``{"path", "kind", "rule", "listed", "matched", "matched_skipped", "unmatched",
    "unmatched_examples"}``."""
    files, kind = listed_paths(manifest)
    base = Path(manifest).expanduser().resolve().parent
    index = {p: i for i, p in enumerate(folder.paths)}
    skipped = {p for p, _ in folder.skipped}
    is_poison = np.zeros(len(folder.paths), bool)
    matched, in_skipped, missing = 0, 0, []
    for f in files:
        where = os.path.normpath(base / f)
        rel = os.path.relpath(where, folder.root).replace(os.sep, "/") if where.startswith(str(folder.root) + os.sep) else None
        own = os.path.normpath(f).replace(os.sep, "/")
        hit = next((c for c in (rel, own) if c is not None and (c in index or c in skipped)), None)
        if hit is None:
            missing.append(shown(f))
        elif hit in index:
            matched += not is_poison[index[hit]]
            is_poison[index[hit]] = True
        else:
            in_skipped += 1
    if matched == 0:
        raise UserError(f"--manifest {manifest}: none of the {len(files)} poisoning inputs it lists is a scanned file of "
                        f"FOLDER {folder.root} ({RULE})" + (f"; first listed: {missing[0]}" if missing else ""))
    info = {"path": str(Path(manifest).expanduser().absolute()), "kind": kind, "rule": RULE, "listed": len(files),
            "matched": matched, "matched_skipped": in_skipped, "unmatched": len(missing),
            "unmatched_examples": missing[:5]}
    return is_poison, info
