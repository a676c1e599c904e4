"""Datasets torchvision knows (``cifar10``, ``svhn``, ``gtsrb``, ``fashion-mnist``): read from its
files under the data root (:mod:`.location`) when there, else downloaded there; ``fashion-mnist`` first from its IDX
files (under ``--data-root`` or Debian's ``dataset-fashion-mnist``), with no download.

The registry entries (:class:`.base.DatasetSource`) are :data:`CIFAR10`, :data:`SVHN`,
:data:`GTSRB` and :data:`FASHION_MNIST`."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import UserError
from .base import DatasetSource, ImageSplit, _from_arrays, _to_rgb_array
from .location import GET, SET_IT, data_root

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
    """Where Fashion-MNIST's IDX files are (under the data root ``root``, :func:`.location.data_root`,
    or Debian's package), or None."""
    return _idx_folder(data_root(root))


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
    return UserError(f"dataset {name} not found under {root} and not downloaded ({type(err).__name__}; {SET_IT}); "
                     f"get it: {GET.get(name, 'see docs/CONFIG.md, Datasets')}")


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


CIFAR10 = DatasetSource(_under_root(_torchvision_pair("CIFAR10", {"train": True}, {"train": False})))
SVHN = DatasetSource(_under_root(_torchvision_pair("SVHN", {"split": "train"}, {"split": "test"})))
GTSRB = DatasetSource(_under_root(_load_gtsrb))
FASHION_MNIST = DatasetSource(_under_root(_load_fashion_mnist))
