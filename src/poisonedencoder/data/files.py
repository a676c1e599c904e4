"""A dataset read from its files under ``--data-root`` (:class:`OnDisk`, the registry entry of each
dataset of :mod:`.ondisk`) and the helpers that list and fingerprint such files."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..core.errors import UserError
from .base import IMAGE_SUFFIXES, Loaded
from .location import SET_IT, not_found


def _missing(name: str, what: str, where: Path, layout: str) -> UserError:
    """Dataset ``name`` is not under ``where`` (``what`` is not there): where to get it, its layout."""
    return not_found(name, where, what, layout)


def _images_in(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())


def _subdirs(folder: Path) -> list[Path]:
    """Class (or split) folders: sub-folders, hidden ones and zip leftovers (``__MACOSX``) left out."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def _class_files(name: str, folder: Path, layout: str) -> tuple[list[str], list[tuple[Path, str]]]:
    """``folder/<class>/*``: the sorted class names and (file, class) pairs; every class must hold an image."""
    classes = [p.name for p in _subdirs(folder)] if folder.is_dir() else []
    if not classes:
        raise _missing(name, "class folders", folder, layout)
    files: list[tuple[Path, str]] = []
    for c in classes:
        found = _images_in(folder / c)
        if not found:
            raise UserError(f"{name}: class folder {folder / c} holds no images; expected layout: {layout} ({SET_IT})")
        files += [(f, c) for f in found]
    return classes, files


def _tree(folder: Path, depth: int) -> list[Path]:
    """``folder`` and its sub-folders down to ``depth`` levels, sorted."""
    out = [folder]
    if depth > 0 and folder.is_dir():
        for d in _subdirs(folder):
            out += _tree(d, depth - 1)
    return out


def _fingerprint(folder: Path, watched: Iterable[Path]) -> str:
    """A hash of ``folder``'s absolute path and of each watched path's size (files) or number of
    entries (folders) and mtime: it changes with the data root and when files come or go."""
    h = hashlib.sha1(str(folder.resolve()).encode())
    for p in watched:
        try:
            st = p.stat()
            n = len(os.listdir(p)) if p.is_dir() else st.st_size
            h.update(f"{p}:{n}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}:-\n".encode())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class OnDisk:
    """A dataset read from files, and its entry of :data:`.datasets.DATASETS` (the members of a
    :class:`.base.DatasetSource`: ``load``, ``cache_key``, ``argument``). ``find(data_root)`` is its
    folder (or a UserError that names the layout), ``read(folder, size, progress)`` decodes it,
    ``watched(folder)`` are the paths whose size and mtime go into the cache key, and
    ``check(folder)`` raises the UserError that ``read`` would raise for the folder's layout
    (an empty folder, a class without images), from its listing alone, without decoding."""

    name: str
    layout: str
    find: Callable[[Path], Path]
    read: Callable[[Path, int, bool], Loaded]
    watched: Callable[[Path], list[Path]]
    check: Callable[[Path], object]
    argument = ""  # written by its name alone (not a field)

    def readable(self, data_root: Path) -> Path:
        """Its folder, once found and its layout checked (:attr:`check`): a UserError otherwise."""
        folder = self.find(Path(data_root))
        self.check(folder)
        return folder

    def load(self, _spec: str, size: int, data_root: Path, progress: bool = True) -> Loaded:
        return self.read(self.find(Path(data_root)), size, progress)

    def cache_key(self, _spec: str, data_root: Path) -> str:
        folder = self.find(Path(data_root))
        return f"{self.name}-{_fingerprint(folder, self.watched(folder))}"
