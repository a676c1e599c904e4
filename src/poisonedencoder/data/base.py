"""What every dataset module shares: the cache paths, the dataset types, image decoding and the
registry entry's interface (:class:`DatasetSource`). Imports no other module of the package's
data layer, so :mod:`.datasets` and :mod:`.ondisk` both import it and not each other both ways."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import UserError, preview

DEFAULT_CACHE = Path(os.environ.get("POISONEDENCODER_CACHE", "~/.cache/poisonedencoder")).expanduser()
DEFAULT_DATA_ROOT = DEFAULT_CACHE / "data"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


@dataclass
class ImageSplit:
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ImageDataset:
    name: str
    classes: list[str]
    train: ImageSplit
    test: ImageSplit

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_index(self, value: int | str) -> int:
        """Resolve a class given by index or by name; raise UserError if it is not a class."""
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            if value not in self.classes:
                raise UserError(f"target class {preview(value)} is not a class of {self.name} (classes: {', '.join(self.classes)})")
            return self.classes.index(value)
        idx = int(value)
        if not 0 <= idx < self.num_classes:
            raise UserError(f"target class {idx} is outside the {self.num_classes} classes of {self.name} (0..{self.num_classes - 1})")
        return idx


Loaded = tuple[list[str], ImageSplit, ImageSplit]
"""What a loader returns: ``(classes, train, test)``."""


@dataclass(frozen=True)
class DatasetSource:
    """One entry of :data:`.datasets.DATASETS`. ``load(spec, image_size, data_root, progress)``
    returns ``(classes, train, test)``; ``cache_key(spec, data_root)`` names its decoded ``.npz`` (a
    dataset read from files puts what changes with them in it). A source with ``argument``
    (``imagefolder``) is written ``name:ARGUMENT``. A dataset read from files under
    ``--data-root`` is an :class:`.ondisk.OnDisk`, which has the same three members."""

    load: Callable[[str, int, Path, bool], Loaded]
    cache_key: Callable[[str, Path], str] = lambda spec, _data_root: spec
    argument: str = ""


# --------------------------------------------------------------------------- decoding
def _to_rgb_array(img: Image.Image, size: int) -> np.ndarray:
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _from_arrays(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 arrays (N,H,W) or (N,H,W,C) -> uint8 (N,size,size,3)."""
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if images.shape[1:3] == (size, size):
        return np.ascontiguousarray(images, dtype=np.uint8)
    return np.stack([_to_rgb_array(Image.fromarray(im), size) for im in images])


def _decode(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return _to_rgb_array(im, size)
    except Exception as e:
        raise UserError(f"cannot read image {path}: {type(e).__name__}") from e


def _bar(progress: bool, **kw):
    from tqdm.auto import tqdm

    return tqdm(disable=not (progress and sys.stderr.isatty()), leave=False, **kw)


def _decode_files(paths: list[Path], size: int, progress: bool, desc: str) -> np.ndarray:
    """Decode image files into one preallocated uint8 (N, size, size, 3) array."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    with _bar(progress, total=len(paths), desc=desc) as bar:
        for i, p in enumerate(paths):
            out[i] = _decode(p, size)
            bar.update(1)
    return out


def _split(classes: list[str], files: list[tuple[Path, str]], size: int, progress: bool, desc: str) -> ImageSplit:
    labels = np.array([classes.index(c) for _, c in files], dtype=np.int64)
    return ImageSplit(_decode_files([f for f, _ in files], size, progress, desc), labels)
