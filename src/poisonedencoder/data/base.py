"""What every dataset module shares: the cache paths, the dataset types, image decoding and the
registry entry's interface (:class:`DatasetSource`). Imports no other module of the package's
data layer, so :mod:`.datasets` and :mod:`.ondisk` both import it and not each other both ways."""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..core.errors import UserError, bound_from_env, preview

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


MAX_PIXELS = 89_478_485
"""The most pixels (width x height) an image file may have to be decoded: PIL's own
decompression-bomb limit (1024 * 1024 * 1024 // 4 // 3, about 256 MiB as RGB), checked from the
header before anything is decoded. :data:`MAX_PIXELS_ENV` raises (or lowers) it."""
MAX_PIXELS_ENV = "POISONEDENCODER_MAX_PIXELS"

_PIL_SETTINGS = threading.Lock()  # PIL's limits are process-wide: one decoder changes them at a time


def max_pixels() -> int:
    """:data:`MAX_PIXELS`, or the whole number in ``$POISONEDENCODER_MAX_PIXELS``."""
    return bound_from_env(MAX_PIXELS_ENV, MAX_PIXELS)


class ImageRefused(Exception):
    """An image file that is not decoded; ``str()`` says why, to follow the file's name."""


def open_rgb(path: str | Path) -> Image.Image:
    """The image file ``path`` decoded as RGB, or :class:`ImageRefused` saying why not: it cannot be
    opened, it is not an image PIL can read, it has more than :func:`max_pixels` pixels (read from
    its header, before decoding: a small file can decode to gigabytes), it is truncated or damaged
    (never padded), or it does not fit in memory."""
    from PIL import ImageFile, UnidentifiedImageError

    limit = max_pixels()
    with _PIL_SETTINGS:
        before = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = False, None  # the limit is checked here
        try:
            with Image.open(path) as im:
                w, h = im.size
                if w * h > limit:
                    raise ImageRefused(f"too large: {w}x{h} is more than {limit} pixels (decompression-bomb guard; "
                                       f"{MAX_PIXELS_ENV} raises the bound)")
                im.load()
                return im.convert("RGB")
        except ImageRefused:
            raise
        except UnidentifiedImageError:
            raise ImageRefused("not an image PIL can read") from None
        except MemoryError:
            raise ImageRefused("too large to decode in memory") from None
        except OSError as e:
            if e.errno is not None:  # the file itself: missing, a folder, no permission
                raise ImageRefused(f"cannot be opened ({e.strerror})") from None
            raise ImageRefused(f"truncated or damaged ({type(e).__name__}: {_first_line(e)})") from None
        except Exception as e:  # damaged chunks: SyntaxError, ValueError, zlib.error
            raise ImageRefused(f"truncated or damaged ({type(e).__name__}: {_first_line(e)})") from None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = before


def _first_line(e: Exception) -> str:
    """An exception's message: its first line, cut to 160 characters."""
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__


def _decode(path: Path, size: int) -> np.ndarray:
    try:
        return _to_rgb_array(open_rgb(path), size)
    except ImageRefused as e:
        raise UserError(f"cannot read image {path}: {e}") from None


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


def stratified_split(labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: per class (in label order), ``round(test_fraction * n)`` drawn with
    ``np.random.default_rng(seed)`` go to test (at least 1 and at most n-1 when n >= 2)."""
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(test_fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        idx = idx[rng.permutation(len(idx))]
        te.append(np.sort(idx[:k]))
        tr.append(np.sort(idx[k:]))
    return np.concatenate(tr), np.concatenate(te)
