"""A claims folder's record: what of every finished run is kept (:data:`RECORD`: every number
of the table and what made it, no encoders or images), copied with this machine's paths made
portable, so that ``claims --out RECORD --table`` rebuilds the table anywhere and a copy of it
as ``--out`` resumes without running the recorded runs again."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ...config.files import dump
from ...core.folders import claim_dir
from ...core.io import write_text
from ...experiment.rundir import METRICS, SECONDS_TXT, RunDir
from .arms import SHARED

_RUN = RunDir("")  # the layout's paths relative to a run folder
RECORD = {**{p.as_posix(): p.as_posix() for p in (_RUN.metrics, _RUN.config, _RUN.stamp, _RUN.report,
                                                   _RUN.path / "defense.json", _RUN.timing)},
          _RUN.manifest.as_posix(): "poisons_manifest.json",  # beside poisons/: a manifest there would claim its PNGs
          **{p.as_posix(): p.as_posix() for p in (_RUN.poisoned_encoder / SECONDS_TXT, _RUN.unfiltered_encoder / SECONDS_TXT)}}
"""What a run's record keeps (source -> name in the record): every number of the table and what
made it, not the encoders or images (an unfinished run crafts its poisoning inputs again, alike)."""


def home_as_tilde(text: str, home: str) -> str:
    """``text`` with the home folder ``home`` written ``~`` where a path starts with it as a whole
    component (``/home/ann/x``, not ``/home/anna/x`` nor ``/data/home/ann``); unchanged where
    ``home`` is not an absolute folder below the root (``HOME=/`` or an empty ``HOME``)."""
    home = home.rstrip("/")
    if not home.startswith("/"):
        return text
    before, after = r"""\s"'`=:,([{""", r"""/\s"'`,)\]}"""  # what may stand before a path, and after a folder's name
    return re.sub(rf"(?<![^{before}]){re.escape(home)}(?![^{after}])", "~", text)


def record(out: str | Path, dest: str | Path, data_root: str | Path | None = None) -> int:
    """Copy the record of every finished run under ``out/arms`` (``RECORD``), and the table, into
    ``dest`` with the same layout. ``claims --out dest --table`` then rebuilds the table from it on any
    machine (no dataset or device needed: :func:`read_table`), and a
    copy of it as ``--out`` resumes the table without running the recorded runs again (on a
    machine where they have the same configuration fingerprint). Paths of this machine become
    relative (the run folder), ``~`` (home) or :data:`SHARED` (a ``data_root`` inside
    ``data_root``, however the run spelled it; left as it is when ``data_root`` is None); none of
    them is in a fingerprint. ``dest`` is refused, before anything is read, where it is not
    the toolkit's (:func:`~poisonedencoder.core.folders.claim_dir`: a non-empty folder without its marker,
    or a link, or a folder holding one). Returns the runs recorded."""
    out, dest = Path(out), claim_dir(dest, "record folder (--record)")
    here = str(out.resolve()) + "/"
    shared = Path(data_root).resolve() if data_root is not None else None

    def portable(text: str, name: str) -> str:
        from ...config.files import parse_yaml

        text = text.replace(here, "").replace(str(out.absolute()) + "/", "")
        if shared is not None and name == _RUN.config.name:
            cfg = parse_yaml(text, f"a run's {name}")
            root = cfg.get("data_root") if isinstance(cfg, dict) else None
            if isinstance(root, str) and Path(root).resolve().is_relative_to(shared):
                inside = Path(root).resolve().relative_to(shared)
                cfg["data_root"] = SHARED if inside == Path(".") else f"{SHARED}/{inside.as_posix()}"
                text = dump(cfg)
        return home_as_tilde(text, os.path.expanduser("~"))

    def copy(src: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text(target, portable(src.read_text(), target.name))

    n = 0
    for m in sorted((out / "arms").rglob(METRICS)):
        run = m.parent
        if not RunDir(run).stamp.is_file():
            continue
        n += run.name.startswith(("seed_", "target_"))
        for rel, name in RECORD.items():
            src = run / rel
            if src.is_file():
                copy(src, dest / run.relative_to(out) / name)
    for name in ("claims.md", "claims.json"):
        if (out / name).is_file():
            copy(out / name, dest / name)
    return n
