"""Reading an unlabeled image folder for a scan: every image file under it (flat, or in class
subfolders whose names are ignored), decoded to RGB uint8 ``(H, W, 3)``; what cannot be scanned is
skipped with its reason, never a crash.

Which files: those whose name ends in an extension that PIL registers for an image format (``.png``,
``.jpg``, ``.jpeg``, ``.webp``, ``.bmp``, ``.gif``, ``.tif``, ...; any case). Other files (a
``manifest.json``, a ``README``) are not images and are only counted. Files and folders are read
in sorted order, so a scan of the same folder is the same scan. Symbolic links: a link to a file
inside the folder is read; a link that leads outside the folder, a broken one, and every link to a
folder (outside: it leaves the folder; inside: its files are read where they lie) are skipped.

Skipped, with the reason: a file that is not a regular file (a FIFO would block the read), one
PIL cannot identify, a truncated or damaged image, one of more than
:data:`~poisonedencoder.data.base.MAX_PIXELS` pixels (a decompression bomb: a small file that
decodes to gigabytes; checked from the header, before decoding; ``POISONEDENCODER_MAX_PIXELS``
raises the bound), and one smaller than :data:`MIN_SIDE` pixels on a side (too small to crop).
"""
from __future__ import annotations

import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.base import ImageRefused, open_rgb
from ..core.errors import UserError

MIN_SIDE = 8
"""The smallest width or height scanned: the toolkit's smallest image size (``pretrain.image_size``
>= 8); a crop of a smaller image is a few pixels blown up, and its halves (part_hash) hold nothing."""
PROGRESS_SECONDS = 30.0
"""Without a terminal: a progress line at least this often."""


@dataclass
class Folder:
    """The images of a folder and what was left out. ``paths``: each image's path relative to the
    folder (POSIX separators), in reading order; ``skipped``: ``(relative path, reason)``;
    ``others``: files that are not image files (by name), not read."""

    root: Path
    images: list[np.ndarray] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    others: int = 0


def image_extensions() -> set[str]:
    from PIL import Image

    return {e.lower() for e in Image.registered_extensions()}


def shown(path: str) -> str:
    """A path as text that any writer takes: bytes that are not UTF-8 become ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _inside(target: Path, root: Path) -> bool:
    return target == root or root in target.parents


def read_image(path: str | Path) -> tuple[np.ndarray | None, str | None]:
    """``(image, None)``: the file as RGB uint8 ``(H, W, 3)``; or ``(None, reason)`` where it cannot
    be scanned (:func:`~poisonedencoder.data.base.open_rgb`'s reasons, or :data:`MIN_SIDE`)."""
    try:
        im = open_rgb(path)
    except ImageRefused as e:
        return None, shown(str(e))
    w, h = im.size
    if min(w, h) < MIN_SIDE:
        return None, f"too small: {w}x{h}, under {MIN_SIDE} pixels on a side"
    return np.asarray(im, dtype=np.uint8), None


def _walk(root: Path, exclude: list[Path], skipped: list, extensions: set[str]) -> tuple[list[tuple[str, Path]], int]:
    """The image files under ``root`` as ``(relative path, path)``, in sorted order, and the count of
    other files; links and special files that are not read go to ``skipped``."""
    files, others = [], 0
    for here, dirs, names in os.walk(root, followlinks=False, onerror=lambda e: skipped.append(
            (shown(os.path.relpath(e.filename, root)) if e.filename else "?", f"folder unreadable ({e.strerror})"))):
        base = Path(here)
        dirs.sort()
        for d in list(dirs):
            p = base / d
            if p.resolve() in exclude:
                dirs.remove(d)
            elif p.is_symlink():
                dirs.remove(d)
                where = "outside FOLDER" if not _inside(p.resolve(), root) else "inside FOLDER (its files are read there)"
                skipped.append((shown(p.relative_to(root).as_posix()) + "/", f"symlink to a folder {where}"))
        for n in sorted(names):
            p = base / n
            rel = shown(p.relative_to(root).as_posix())
            if Path(n).suffix.lower() not in extensions:
                others += 1
                continue
            if p.is_symlink():
                target = p.resolve()
                if not target.exists():
                    skipped.append((rel, "broken symlink"))
                    continue
                if not _inside(target, root):
                    skipped.append((rel, "symlink leading outside FOLDER"))
                    continue
            try:
                mode = p.stat().st_mode
            except OSError as e:
                skipped.append((rel, f"unreadable ({e.strerror})"))
                continue
            if not stat.S_ISREG(mode):
                skipped.append((rel, "not a regular file"))
                continue
            files.append((rel, p))
    return sorted(files), others


def read_folder(folder: str | Path, what: str = "FOLDER", exclude: tuple[str | Path, ...] = (),
                log: Callable[[str], None] = print) -> Folder:
    """Every image under ``folder`` (module docstring). ``exclude``: folders under it left out (the
    scan's own ``--out``). A folder that is missing, not a folder, or holds no image that can be
    scanned is a :class:`UserError` naming ``what``."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise UserError(f"{what} {root} does not exist")
    if not root.is_dir():
        raise UserError(f"{what} {root} is not a folder")
    root = root.resolve()
    skipped: list[tuple[str, str]] = []
    files, others = _walk(root, [Path(e).resolve() for e in exclude], skipped, image_extensions())
    out = Folder(root, others=others)
    for rel, p in progress(files, f"reading {what}", log):
        img, why = read_image(p)
        if img is None:
            skipped.append((rel, why))
        else:
            out.images.append(img)
            out.paths.append(rel)
    out.skipped = skipped
    if not out.images:
        found = (f"{len(files)} image file(s), none readable" if files else "no image files")
        raise UserError(f"{what} {root} holds nothing to scan: {found} ({len(skipped)} skipped, "
                        f"{others} other file(s))")
    return out


def progress(items: list, desc: str, log: Callable[[str], None]):
    """``items``, with a progress bar on a terminal and otherwise a log line at least every
    :data:`PROGRESS_SECONDS` (and one at the end)."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc, leave=False)
        return
    t0 = last = time.monotonic()
    for i, x in enumerate(items):
        yield x
        if time.monotonic() - last >= PROGRESS_SECONDS:
            last = time.monotonic()
            log(f"{desc}: {i + 1}/{len(items)} ({last - t0:.0f}s)")
    log(f"{desc}: {len(items)} done ({time.monotonic() - t0:.1f}s)")
