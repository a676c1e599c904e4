"""Load a dataset by name into uint8 arrays ``(N, H, W, 3)`` plus int64 labels.

Names (the registry :data:`DATASETS`): ``digits`` (embedded in scikit-learn, no download),
``cifar10``, ``svhn``, ``gtsrb``, ``fashion-mnist`` (torchvision, under ``--data-root``),
``stl10``, ``eurosat``, ``tiny-imagenet``, ``facemask`` (read from their files under
``--data-root``, never downloaded: :mod:`.ondisk`) and ``imagefolder:PATH``
(``PATH/train/<class>/*`` and ``PATH/test/<class>/*``).

Every image is converted to RGB and resized to ``image_size`` once; the decoded
arrays are cached as ``.npz`` under the cache directory (never pickled).
"""
from __future__ import annotations

import hashlib
import sys
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import UserError, preview
from ..io import atomic_write

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


# --------------------------------------------------------------------------- IDX files (Fashion-MNIST)
FASHION_MNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (MNIST's format: magic, dims, big-endian sizes, uint8 data), optionally gzipped."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        nd = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)
    except Exception as e:
        raise UserError(f"cannot read IDX file {path}: {type(e).__name__}: {e}") from e


def _idx_folder(root: Path) -> Path | None:
    """A folder that holds the four Fashion-MNIST IDX files (plain or .gz), if any."""
    for d in (root, root / "FashionMNIST" / "raw", root / "fashion-mnist", FASHION_MNIST_SYSTEM):
        if all(_idx_file(d, s) for pair in _IDX.values() for s in pair):
            return d
    return None


def fashion_mnist_folder(root: str | Path | None) -> Path | None:
    """Where Fashion-MNIST's IDX files are (under ``root`` or Debian's package), or None."""
    return _idx_folder(Path(root or "."))


def _load_fashion_idx(folder: Path, size: int) -> tuple[list[str], ImageSplit, ImageSplit]:
    splits = []
    for split in ("train", "test"):
        xs, ys = (read_idx(_idx_file(folder, s)) for s in _IDX[split])
        if len(xs) != len(ys):
            raise UserError(f"Fashion-MNIST {split} files in {folder} disagree: {len(xs)} images, {len(ys)} labels")
        splits.append(ImageSplit(_from_arrays(xs, size), ys.astype(np.int64)))
    return list(FASHION_MNIST_CLASSES), splits[0], splits[1]


# --------------------------------------------------------------------------- torchvision
def _offline_error(name: str, root: Path, err: Exception) -> UserError:
    return UserError(
        f"dataset {name} is not under --data-root {root} and could not be downloaded ({type(err).__name__}); "
        f"put it there, pass --data-root DIR that holds it, or use imagefolder:PATH"
    )


def _tv(name: str, root: Path, make: Callable[[bool, bool], object]):
    """Build a torchvision dataset: try the files on disk first, then download."""
    try:
        return make(False)
    except Exception:
        pass
    try:
        return make(True)
    except Exception as e:
        raise _offline_error(name, root, e) from e


def _tv_arrays(ds) -> tuple[np.ndarray, np.ndarray]:
    data = getattr(ds, "data", None)
    if data is not None:
        data = np.asarray(data)
        if hasattr(ds, "targets"):
            labels = np.asarray(ds.targets)
        else:
            labels = np.asarray(ds.labels)
        if data.ndim == 4 and data.shape[1] == 3:  # SVHN / STL10 are (N, C, H, W)
            data = data.transpose(0, 2, 3, 1)
        return data.astype(np.uint8), labels.astype(np.int64)
    # datasets of files (EuroSAT, GTSRB)
    imgs, labels = [], []
    for i in range(len(ds)):
        im, y = ds[i]
        imgs.append(im)
        labels.append(y)
    return imgs, np.asarray(labels, dtype=np.int64)


def _resize_any(imgs, size: int) -> np.ndarray:
    if isinstance(imgs, np.ndarray):
        return _from_arrays(imgs, size)
    return np.stack([_to_rgb_array(im, size) for im in imgs])


def _torchvision_pair(cls_name: str, train: dict, test: dict) -> Callable[[str, Path, int], tuple]:
    """A loader for a torchvision dataset with a train and a test split (``train`` / ``test``: the
    split's keyword arguments)."""
    def load(name: str, root: Path, size: int) -> tuple[list[str], ImageSplit, ImageSplit]:
        import torchvision.datasets as tvd

        cls, r = getattr(tvd, cls_name), str(root)
        tr = _tv(name, root, lambda dl: cls(r, download=dl, **train))
        te = _tv(name, root, lambda dl: cls(r, download=dl, **test))
        classes = list(getattr(tr, "classes", [])) or [str(c) for c in sorted(set(_tv_arrays(tr)[1].tolist()))]
        splits = []
        for ds in (tr, te):
            imgs, labels = _tv_arrays(ds)
            splits.append(ImageSplit(_resize_any(imgs, size), labels))
        return classes, splits[0], splits[1]

    return load


def _load_gtsrb(name: str, root: Path, size: int) -> tuple[list[str], ImageSplit, ImageSplit]:
    _, tr, te = _torchvision_pair("GTSRB", {"split": "train"}, {"split": "test"})(name, root, size)
    return [str(i) for i in range(43)], tr, te


def _load_fashion_mnist(name: str, root: Path, size: int) -> tuple[list[str], ImageSplit, ImageSplit]:
    folder = _idx_folder(root)
    if folder is not None:  # the IDX files on disk (e.g. Debian's dataset-fashion-mnist): no download
        return _load_fashion_idx(folder, size)
    return _torchvision_pair("FashionMNIST", {"train": True}, {"train": False})(name, root, size)


def _under_root(load: Callable[[str, Path, int], tuple]) -> Callable:
    def run(spec: str, size: int, data_root: Path, progress: bool) -> tuple:  # noqa: ARG001 (DatasetSource.load signature)
        data_root.mkdir(parents=True, exist_ok=True)
        return load(spec, data_root, size)
    return run


@dataclass(frozen=True)
class DatasetSource:
    """One entry of :data:`DATASETS`. ``load(spec, image_size, data_root, progress)`` returns
    ``(classes, train, test)``; ``cache_key(spec, data_root)`` names its decoded ``.npz`` (a
    dataset read from files puts what changes with them in it). A source with ``argument``
    (``imagefolder``) is written ``name:ARGUMENT``."""

    load: Callable[[str, int, Path, bool], tuple[list[str], ImageSplit, ImageSplit]]
    cache_key: Callable[[str, Path], str] = lambda spec, _data_root: spec
    argument: str = ""


def _imagefolder_root(spec: str) -> Path:
    root = Path(spec.split(":", 1)[1]).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist")
    return root


def _imagefolder_key(spec: str, _data_root: Path) -> str:
    root = _imagefolder_root(spec)
    return f"imagefolder-{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}-{_folder_fingerprint(root)}"


def _on_disk(name: str) -> DatasetSource:
    """The registry entry of a dataset of :mod:`.ondisk` (imported when used: it imports this module)."""
    def load(_spec: str, size: int, data_root: Path, progress: bool) -> tuple[list[str], ImageSplit, ImageSplit]:
        from .ondisk import ON_DISK
        return ON_DISK[name].load(data_root, size, progress)

    def key(_spec: str, data_root: Path) -> str:
        from .ondisk import ON_DISK
        return ON_DISK[name].cache_key(data_root)

    return DatasetSource(load, key)


DATASETS: dict[str, DatasetSource] = {
    "digits": DatasetSource(lambda _spec, size, _root, _progress: _load_digits(size)),
    "cifar10": DatasetSource(_under_root(_torchvision_pair("CIFAR10", {"train": True}, {"train": False}))),
    "svhn": DatasetSource(_under_root(_torchvision_pair("SVHN", {"split": "train"}, {"split": "test"}))),
    "gtsrb": DatasetSource(_under_root(_load_gtsrb)),
    "fashion-mnist": DatasetSource(_under_root(_load_fashion_mnist)),
    "stl10": _on_disk("stl10"),
    "eurosat": _on_disk("eurosat"),
    "tiny-imagenet": _on_disk("tiny-imagenet"),
    "facemask": _on_disk("facemask"),
    "imagefolder": DatasetSource(lambda spec, size, _root, progress: _load_imagefolder(_imagefolder_root(spec), size, progress),
                                 _imagefolder_key, argument="PATH"),
}
"""Datasets by name (``pretrain_data.dataset``, ``tasks[].dataset``). Adding one: a loader and a line here."""


def dataset_names() -> list[str]:
    """The names a config may give, as the user writes them (``imagefolder:PATH``)."""
    return [f"{n}:{s.argument}" if s.argument else n for n, s in DATASETS.items()]


def dataset_source(spec: object, where: str = "dataset") -> DatasetSource:
    """The registry entry of ``spec``; a one-line :class:`UserError` if there is none."""
    if isinstance(spec, str):
        name, sep, _ = spec.partition(":")
        s = DATASETS.get(name)
        if s is not None and bool(s.argument) == bool(sep):
            return s
    raise UserError(f"{where}: unknown dataset {preview(spec)}; choose one of: {', '.join(dataset_names())}")


def check_dataset(spec: object, where: str = "dataset") -> None:
    dataset_source(spec, where)


def _save_npz(path: Path, ds: ImageDataset) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, classes=np.array(ds.classes), train_x=ds.train.images, train_y=ds.train.labels,
                     test_x=ds.test.images, test_y=ds.test.labels)

    atomic_write(path, _w)


def _load_npz(path: Path, name: str) -> ImageDataset | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return ImageDataset(name, [str(c) for c in z["classes"]], ImageSplit(z["train_x"], z["train_y"]),
                                ImageSplit(z["test_x"], z["test_y"]))
    except Exception:
        return None  # corrupt cache: decode again


def load_dataset(spec: str, image_size: int = 32, data_root: str | Path | None = None,
                 cache_dir: str | Path | None = None, progress: bool = True) -> ImageDataset:
    """Load ``spec`` as an :class:`ImageDataset` with images resized to ``image_size``.

    Decoded arrays are cached under ``cache_dir`` (default ``~/.cache/poisonedencoder``).
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE
    data_root = Path(data_root).expanduser() if data_root else DEFAULT_DATA_ROOT
    source = dataset_source(spec)
    cache = cache_dir / "datasets" / f"{source.cache_key(spec, data_root)}-{image_size}px.npz"
    if cache.exists():
        ds = _load_npz(cache, spec)
        if ds is not None:
            return ds
    classes, tr, te = source.load(spec, image_size, data_root, progress)
    ds = ImageDataset(spec, classes, tr, te)
    try:
        _save_npz(cache, ds)
    except OSError:
        pass  # a read-only cache is not fatal
    return ds
