"""Load a dataset by name into uint8 arrays ``(N, H, W, 3)`` plus int64 labels.

Names (the registry :data:`DATASETS`): ``digits`` (embedded in scikit-learn, no download),
``cifar10``, ``svhn``, ``gtsrb``, ``fashion-mnist`` (torchvision, under the data root:
:mod:`.torchvision_sets`), ``stl10``, ``eurosat``, ``tiny-imagenet``, ``facemask``,
``cifar10-folder`` (read from their files under the data root, never downloaded: :mod:`.ondisk`)
and ``imagefolder:PATH`` (``PATH/train/<class>/*`` and ``PATH/test/<class>/*``, anywhere). The data
root is one setting (``--data-root``, ``data_root``, ``POISONEDENCODER_DATA``): :mod:`.location`.

Every image is converted to RGB and resized to ``image_size`` once; the decoded
arrays are cached as ``.npz`` under the cache directory (never pickled), with the key they were
made for and their sha256, checked on every read.

The types, cache paths and decoding helpers are in :mod:`.base` (imported here under their old
names too); this module imports :mod:`.ondisk` and :mod:`.torchvision_sets`, neither imports it.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import numpy as np
from pydantic import Field

from ..core.errors import UserError, preview
from ..core.io import atomic_write, os_error_message
from ..core.folders import set_aside
from ..core.settings import Range, Settings
from . import ondisk
from . import torchvision_sets as tv
from .base import (  # noqa: F401 (names this module has always exported)
    DEFAULT_CACHE,
    DEFAULT_DATA_ROOT,
    IMAGE_SUFFIXES,
    DatasetSource,
    ImageDataset,
    ImageSplit,
    Loaded,
    _bar,
    _decode,
    _decode_files,
    _from_arrays,
    _split,
    _to_rgb_array,
)
from .files import OnDisk
from .location import data_root as resolve_data_root
from .location import not_found
from .torchvision_sets import FASHION_MNIST_CLASSES, FASHION_MNIST_SYSTEM, fashion_mnist_folder, read_idx  # noqa: F401


# --------------------------------------------------------------------------- digits
def _load_digits(size: int) -> tuple[list[str], ImageSplit, ImageSplit]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    imgs = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    labels = d.target.astype(np.int64)
    itr, ite = train_test_split(np.arange(len(labels)), test_size=0.25, random_state=0, stratify=labels)
    imgs = _from_arrays(imgs, size)
    return [str(i) for i in range(10)], ImageSplit(imgs[itr], labels[itr]), ImageSplit(imgs[ite], labels[ite])


# --------------------------------------------------------------------------- image folder
def _list_folder(split_dir: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    if not split_dir.is_dir():
        raise UserError(f"image folder split {split_dir} does not exist (expected PATH/train/<class>/* and PATH/test/<class>/*)")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"image folder split {split_dir} holds no class folders")
    files = []
    for c in classes:
        for f in sorted((split_dir / c).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append((f, c))
    if not files:
        raise UserError(f"image folder split {split_dir} holds no image files")
    return classes, files


def _folder_fingerprint(root: Path) -> str:
    h = hashlib.sha1()
    for split in ("train", "test"):
        d = root / split
        if d.is_dir():
            for c in sorted(d.iterdir()):
                if c.is_dir():
                    st = c.stat()
                    h.update(f"{split}/{c.name}:{len(os.listdir(c))}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _load_imagefolder(root: Path, size: int, progress: bool = True) -> tuple[list[str], ImageSplit, ImageSplit]:
    classes, train_files = _list_folder(root / "train")
    test_classes, test_files = _list_folder(root / "test")
    if test_classes != classes:
        raise UserError(f"image folder {root}: train classes {classes} differ from test classes {test_classes}")
    return (classes, _split(classes, train_files, size, progress, f"decode {root.name}/train"),
            _split(classes, test_files, size, progress, f"decode {root.name}/test"))


def _imagefolder_root(spec: str) -> Path:
    root = Path(spec.split(":", 1)[1]).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist (imagefolder:PATH reads PATH/train/<class>/* and "
                        f"PATH/test/<class>/*; CIFAR-10 under the data root is the dataset cifar10-folder)")
    return root


def _imagefolder_key(spec: str, _data_root: Path) -> str:
    root = _imagefolder_root(spec)
    return f"imagefolder-{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}-{_folder_fingerprint(root)}"


DATASETS: dict[str, DatasetSource | OnDisk] = {
    "digits": DatasetSource(lambda _spec, size, _root, _progress: _load_digits(size)),
    "cifar10": tv.CIFAR10,
    "svhn": tv.SVHN,
    "gtsrb": tv.GTSRB,
    "fashion-mnist": tv.FASHION_MNIST,
    "stl10": ondisk.STL10,
    "eurosat": ondisk.EUROSAT,
    "tiny-imagenet": ondisk.TINY_IMAGENET,
    "facemask": ondisk.FACEMASK,
    "cifar10-folder": ondisk.CIFAR10_FOLDER,
    "imagefolder": DatasetSource(lambda spec, size, _root, progress: _load_imagefolder(_imagefolder_root(spec), size, progress),
                                 _imagefolder_key, argument="PATH"),
}
"""Datasets by name (``pretrain_data.dataset``, ``tasks[].dataset``), each entry with ``load``,
``cache_key`` and ``argument`` (:class:`DatasetSource`; :class:`.files.OnDisk` for a dataset read
from its files). Adding one: its entry (in a module of this package) and a line here."""


def dataset_names() -> list[str]:
    """The names a config may give, as the user writes them (``imagefolder:PATH``)."""
    return [f"{n}:{s.argument}" if s.argument else n for n, s in DATASETS.items()]


def dataset_source(spec: object, where: str = "dataset") -> DatasetSource | OnDisk:
    """The registry entry of ``spec``; a one-line :class:`UserError` if there is none."""
    if isinstance(spec, str):
        name, sep, _ = spec.partition(":")
        s = DATASETS.get(name)
        if s is not None and bool(s.argument) == bool(sep):
            return s
    raise UserError(f"{where}: unknown dataset {preview(spec)}; choose one of: {', '.join(dataset_names())}")


def check_dataset(spec: object, where: str = "dataset") -> None:
    dataset_source(spec, where)


FASHION_MNIST_LAYOUT = ("<data_root>/fashion-mnist/ (or <data_root>, <data_root>/FashionMNIST/raw, "
                        f"{FASHION_MNIST_SYSTEM}) holding {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]")


def missing(spec: str, data_root: str | Path | None = None) -> str | None:
    """Why dataset ``spec`` cannot be read from under the data root (:func:`.location.data_root`)
    without a download, as its one-line error, or None: a dataset read from its files
    (:class:`.files.OnDisk`) whose folder is not there or does not hold its layout (an empty
    ``facemask/``: :meth:`.files.OnDisk.readable`, from the listing alone), or Fashion-MNIST
    without its IDX files."""
    root = resolve_data_root(data_root)
    if spec == "fashion-mnist":
        return None if fashion_mnist_folder(root) else str(not_found(spec, root, "IDX files", FASHION_MNIST_LAYOUT))
    source = dataset_source(spec)
    if isinstance(source, OnDisk):
        try:
            source.readable(root)
        except UserError as e:
            return str(e)
        except OSError as e:  # a folder that cannot be listed
            return f"{spec}: {os_error_message(e)}"
    return None


class PretrainDataSettings(Settings):
    """The ``pretrain_data`` section: the clean pre-training set."""

    dataset: str = Field("digits", description="see \"Datasets\"")
    num_images: Annotated[Optional[int], Range(1, 10**9)] = Field(None, description="clean pre-training inputs drawn from the train split (null = all)")

    def check(self, where: str) -> None:
        check_dataset(self.dataset, f"{where}.dataset")


_ARRAYS = ("classes", "train_x", "train_y", "test_x", "test_y")


def _content_hash(arrays: dict) -> str:
    """The sha256 of a decoded dataset's arrays: each one's name, dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for name in _ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _save_npz(path: Path, ds: ImageDataset) -> None:
    """The decoded arrays, the key they were made for (the file's name) and their sha256, in one
    file written atomically: the record can never be out of step with what it describes."""
    arrays = {"classes": np.array(ds.classes), "train_x": ds.train.images, "train_y": ds.train.labels,
              "test_x": ds.test.images, "test_y": ds.test.labels}

    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, key=np.array(path.stem), sha256=np.array(_content_hash(arrays)))

    atomic_write(path, _w)


def _read_npz(path: Path) -> tuple[dict | None, str | None]:
    """The arrays of a decoded dataset's file once they pass their check (the key is the file's
    name, the sha256 that of the arrays), or why they do not."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            if not {"key", "sha256"} <= names:
                return None, "no record of its key and content (written before they were checked, or not by this toolkit)"
            arrays = {n: z[n] for n in _ARRAYS}
            key, kept = str(z["key"]), str(z["sha256"])
    except Exception as e:  # noqa: BLE001 (truncated, not an npz, an array missing)
        return None, f"it cannot be read ({type(e).__name__})"
    if key != path.stem:
        return None, f"it was made for {key[:80]!r}, not {path.stem!r}"
    if _content_hash(arrays) != kept:
        return None, "its arrays are not the ones that were kept (their sha256 differs)"
    return arrays, None


def _load_npz(path: Path, name: str, log: Callable[[str], None]) -> ImageDataset | None:
    """The decoded dataset in ``path``, or None where there is none or it fails its check (then it
    is set aside with one line, and the caller decodes again)."""
    if not path.exists():
        return None
    z, why = _read_npz(path)
    if z is None:
        try:
            set_aside(path, why, log)
        except OSError:  # a read-only cache: not served, decoded again each time
            log(f"cache: {path} failed its check ({why}); not used")
        return None
    return ImageDataset(name, [str(c) for c in z["classes"]], ImageSplit(z["train_x"], z["train_y"]),
                        ImageSplit(z["test_x"], z["test_y"]))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cached_train_size(spec: str, image_size: int, data_root: str | Path | None = None,
                      cache_dir: str | Path | None = None) -> int | None:
    """The train split's size of ``spec`` from its decoded cache (see :func:`load_dataset`) alone:
    no decoding, no download, nothing written; None where it is not cached (or its files are gone),
    or where the cached file fails its check."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE
    data_root = Path(data_root).expanduser() if data_root else DEFAULT_DATA_ROOT
    try:
        cache = cache_dir / "datasets" / f"{dataset_source(spec).cache_key(spec, data_root)}-{image_size}px.npz"
    except (UserError, OSError):  # its files are not here
        return None
    if not cache.is_file():
        return None
    z, _why = _read_npz(cache)
    return None if z is None else int(z["train_y"].shape[0])


def load_dataset(spec: str, image_size: int = 32, data_root: str | Path | None = None,
                 cache_dir: str | Path | None = None, progress: bool = True,
                 log: Callable[[str], None] = _say) -> ImageDataset:
    """Load ``spec`` as an :class:`ImageDataset` with images resized to ``image_size``, read from
    under ``data_root`` (None: ``POISONEDENCODER_DATA``, else ``~/.cache/poisonedencoder/data``:
    :func:`.location.data_root`).

    Decoded arrays are cached under ``cache_dir`` (default ``~/.cache/poisonedencoder``), with the
    key they were made for and their sha256; a cached file that fails that check is set aside
    (``log``: its one line, on standard error by default) and the dataset decoded again.
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE
    data_root = resolve_data_root(data_root)
    source = dataset_source(spec)
    cache = cache_dir / "datasets" / f"{source.cache_key(spec, data_root)}-{image_size}px.npz"
    ds = _load_npz(cache, spec, log)
    if ds is not None:
        return ds
    classes, tr, te = source.load(spec, image_size, data_root, progress)
    ds = ImageDataset(spec, classes, tr, te)
    try:
        _save_npz(cache, ds)
    except OSError:
        pass  # a read-only cache is not fatal
    return ds
