"""Datasets read straight from their files under the data root (:mod:`.location`): the paper's
``stl10``, ``eurosat``, ``tiny-imagenet`` and ``facemask``, and ``cifar10-folder`` (CIFAR-10 as an
image folder). No torchvision class, no md5 check, no download: a missing layout is a one-line
:class:`UserError` that names the layout expected and where to get the dataset.

Each dataset is an :class:`.files.OnDisk`, which is also its entry of :data:`.datasets.DATASETS`
(one line there registers it): ``find(data_root)`` locates its folder, ``load`` decodes it
(RGB, resized to the requested size once, with a progress bar on a terminal) and ``cache_key``
names its decoded ``.npz``: the dataset's name plus a hash of the folder's absolute path and of
the size and mtime of its files and folders (like ``imagefolder``'s), so another data root or
files added, removed or renamed decode again. An image rewritten in place under the same name
in a folder whose listing does not change is not noticed: delete the cache to force it.

Splits (none depends on the run's seed):

- ``stl10``: the official train (5,000) and test (8,000) files; the unlabeled split is not read.
- ``eurosat``: 80/20 of the whole folder (classes sorted, files sorted by name, then
  ``np.random.default_rng(0).permutation``, first 80% train): the same split as the
  torchvision-based loader this replaces (not stratified; the 10 classes are large).
- ``tiny-imagenet``: train = ``train/``, test = ``val/`` (labels from ``val/val_annotations.txt``).
- ``facemask``: ``train/`` and ``test/`` (or ``val/``) when there, else a per-class (stratified)
  80/20 split, ``np.random.default_rng(0)`` over the classes in sorted order.
- ``cifar10-folder``: ``cifar10/train/`` and ``cifar10/test/``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import UserError
from .base import ImageSplit, Loaded, _bar, _split, _to_rgb_array, stratified_split
from .files import OnDisk, _class_files, _images_in, _missing, _subdirs, _tree
from .location import SET_IT


# --------------------------------------------------------------------------- STL-10 (binary files)
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
STL10_LAYOUT = "<data_root>/stl10_binary/{train,test}_{X,y}.bin"
_STL10_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
_STL10_SIDE = 96


def _stl10_find(root: Path) -> Path:
    for d in (root / "stl10_binary", root):
        if (d / "train_X.bin").is_file():
            for f in _STL10_FILES:
                if not (d / f).is_file():
                    raise _missing("stl10", f, d, STL10_LAYOUT)
            return d
    raise _missing("stl10", "stl10_binary/train_X.bin", root, STL10_LAYOUT)


def _stl10_count(path: Path) -> int:
    """The number of 3x96x96 images in an STL-10 ``*_X.bin``, from its size (a UserError unless whole)."""
    n, rem = divmod(path.stat().st_size, 3 * _STL10_SIDE * _STL10_SIDE)
    if rem or n == 0:
        raise UserError(f"stl10: {path} is {path.stat().st_size} bytes, not a whole number of 3x96x96 images")
    return n


def read_stl10_images(path: Path, size: int = _STL10_SIDE, progress: bool = False) -> np.ndarray:
    """The images of an STL-10 ``*_X.bin``: uint8, each image 3 channels of 96x96 one after the
    other, each channel in column-major order (so a reshape to (N, 3, 96, 96) gives (N, C, W, H)).
    Returns (N, size, size, 3), resized only when ``size`` is not 96."""
    n = _stl10_count(path)
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 3, _STL10_SIDE, _STL10_SIDE))
    out = np.empty((n, size, size, 3), np.uint8)
    with _bar(progress, total=n, desc=f"decode stl10/{path.stem}") as bar:
        for a in range(0, n, 500):
            block = np.transpose(raw[a:a + 500], (0, 3, 2, 1))  # (N, C, W, H) -> (N, H, W, C)
            if size == _STL10_SIDE:
                out[a:a + len(block)] = block
            else:
                for i, im in enumerate(block):
                    out[a + i] = _to_rgb_array(Image.fromarray(np.ascontiguousarray(im)), size)
            bar.update(len(block))
    del raw
    return out


def _stl10_read(folder: Path, size: int, progress: bool) -> Loaded:
    classes = list(STL10_CLASSES)
    names = folder / "class_names.txt"
    if names.is_file():
        classes = [line.strip() for line in names.read_text().splitlines() if line.strip()]
        if len(classes) != 10:
            raise UserError(f"stl10: {names} names {len(classes)} classes, not 10")
    splits = []
    for split in ("train", "test"):
        xp, yp = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
        labels = np.fromfile(yp, dtype=np.uint8).astype(np.int64) - 1  # 1..10 -> 0..9
        images = read_stl10_images(xp, size, progress)
        if len(labels) != len(images):
            raise UserError(f"stl10: {xp} holds {len(images)} images but {yp} holds {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise UserError(f"stl10: {yp} holds labels outside 1..10")
        splits.append(ImageSplit(images, labels))
    return classes, splits[0], splits[1]


STL10 = OnDisk("stl10", STL10_LAYOUT, _stl10_find, _stl10_read,
               lambda d: [d / f for f in (*_STL10_FILES, "class_names.txt")],
               lambda d: [_stl10_count(d / f"{split}_X.bin") for split in ("train", "test")])


# --------------------------------------------------------------------------- EuroSAT (RGB JPEG folders)
EUROSAT_DIRS = ("2750", "EuroSAT_RGB", "eurosat/2750", "eurosat/EuroSAT_RGB")
EUROSAT_LAYOUT = "<data_root>/eurosat/2750/<class>/*.jpg, <data_root>/2750/<class>/*.jpg or <data_root>/EuroSAT_RGB/<class>/*.jpg"


def _eurosat_find(root: Path) -> Path:
    for sub in EUROSAT_DIRS:
        if (root / sub).is_dir():
            return root / sub
    raise _missing("eurosat", "eurosat/2750/, 2750/ or EuroSAT_RGB/", root, EUROSAT_LAYOUT)


def _eurosat_read(folder: Path, size: int, progress: bool) -> Loaded:
    classes, files = _class_files("eurosat", folder, EUROSAT_LAYOUT)
    full = _split(classes, files, size, progress, "decode eurosat")
    perm = np.random.default_rng(0).permutation(len(full))
    cut = int(0.8 * len(full))  # a fixed 80/20 split, the same as the torchvision-based loader's
    tr, te = perm[:cut], perm[cut:]
    return classes, ImageSplit(full.images[tr], full.labels[tr]), ImageSplit(full.images[te], full.labels[te])


EUROSAT = OnDisk("eurosat", EUROSAT_LAYOUT, _eurosat_find, _eurosat_read, lambda d: _tree(d, 1),
                 lambda d: _class_files("eurosat", d, EUROSAT_LAYOUT))


# --------------------------------------------------------------------------- Tiny-ImageNet (tiny-imagenet-200)
TINY_LAYOUT = ("<data_root>/tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG "
               "and val/val_annotations.txt")


def _tiny_find(root: Path) -> Path:
    for d in (root / "tiny-imagenet-200", root):
        if (d / "wnids.txt").is_file():
            return d
    raise _missing("tiny-imagenet", "tiny-imagenet-200/wnids.txt", root, TINY_LAYOUT)


def _tiny_class_names(folder: Path, wnids: list[str]) -> list[str]:
    """The first name of each wnid in ``words.txt`` (the wnid itself without it; ``name (wnid)``
    where two first names are the same)."""
    words = folder / "words.txt"
    first: dict[str, str] = {}
    if words.is_file():
        for line in words.read_text(errors="replace").splitlines():
            wnid, _, names = line.partition("\t")
            if names.strip():
                first[wnid.strip()] = names.split(",")[0].strip()
    names = [first.get(w, w) for w in wnids]
    return [f"{n} ({w})" if names.count(n) > 1 else n for n, w in zip(names, wnids, strict=True)]


def _tiny_files(folder: Path) -> tuple[list[str], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """The wnids (sorted) and the (file, wnid) pairs of train/ and val/, from the listing and
    val_annotations.txt; a UserError that names the layout where they are not there."""
    lines = (folder / "wnids.txt").read_text().split()
    wnids = sorted(set(lines))  # sorted, like an ImageFolder over train/
    if not wnids:
        raise UserError(f"tiny-imagenet: {folder / 'wnids.txt'} names no classes")
    train: list[tuple[Path, str]] = []
    for w in wnids:
        d = folder / "train" / w
        if (d / "images").is_dir():
            d = d / "images"
        if not d.is_dir():
            raise _missing("tiny-imagenet", f"train/{w}/images/", folder, TINY_LAYOUT)
        found = _images_in(d)
        if not found:
            raise UserError(f"tiny-imagenet: {d} holds no images; expected layout: {TINY_LAYOUT} ({SET_IT})")
        train += [(f, w) for f in found]
    test: list[tuple[Path, str]] = []
    ann = folder / "val" / "val_annotations.txt"
    if ann.is_file():  # the official layout: val/images/*.JPEG, labels in val_annotations.txt
        for i, line in enumerate(ann.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1].strip() not in wnids:
                raise UserError(f"tiny-imagenet: {ann} line {i}: expected 'filename<TAB>wnid<TAB>...' with a wnid of "
                                f"wnids.txt, got {line[:80]!r}")
            test.append((folder / "val" / "images" / fields[0].strip(), fields[1].strip()))
    elif all((folder / "val" / w).is_dir() for w in wnids):  # val/ re-sorted into class folders
        for w in wnids:
            d = folder / "val" / w
            d = d / "images" if (d / "images").is_dir() else d
            test += [(f, w) for f in _images_in(d)]
    else:
        raise _missing("tiny-imagenet", "val/val_annotations.txt", folder, TINY_LAYOUT)
    if not test:
        raise UserError(f"tiny-imagenet: {folder / 'val'} holds no images; expected layout: {TINY_LAYOUT} ({SET_IT})")
    return wnids, train, test


def _tiny_read(folder: Path, size: int, progress: bool) -> Loaded:
    wnids, train, test = _tiny_files(folder)
    return (_tiny_class_names(folder, wnids), _split(wnids, train, size, progress, "decode tiny-imagenet/train"),
            _split(wnids, test, size, progress, "decode tiny-imagenet/val"))


TINY_IMAGENET = OnDisk("tiny-imagenet", TINY_LAYOUT, _tiny_find, _tiny_read,
                       lambda d: [d / "wnids.txt", d / "words.txt", d / "val" / "val_annotations.txt",
                                  *_tree(d / "train", 2), *_tree(d / "val", 2)], _tiny_files)


# --------------------------------------------------------------------------- Facemask (class folders)
FACEMASK_LAYOUT = ("<data_root>/facemask/{train,test}/<class>/* (val/ for test also read), "
                   "or <data_root>/facemask/<class>/* (split 80/20 per class)")
_TEST_NAMES = ("test", "val", "valid", "validation")


def _facemask_find(root: Path) -> Path:
    """``root/facemask``, or ``root`` itself where it holds a train folder or class folders of images
    (not a data root that holds other datasets only)."""
    if (root / "facemask").is_dir():
        return root / "facemask"
    if root.is_dir() and (_facemask_splits(root)[0] is not None or any(_images_in(d) for d in _subdirs(root))):
        return root
    raise _missing("facemask", "facemask/", root, FACEMASK_LAYOUT)


def _facemask_splits(folder: Path) -> tuple[Path | None, Path | None]:
    """The train and test folders (names matched ignoring case: Train/Test/Validation too)."""
    by_name = {p.name.lower(): p for p in _subdirs(folder)} if folder.is_dir() else {}
    test = next((by_name[n] for n in _TEST_NAMES if n in by_name), None)
    return by_name.get("train"), test


def _facemask_files(folder: Path) -> tuple[list[str], list[tuple[Path, str]], list[tuple[Path, str]] | None]:
    """The classes and the (file, class) pairs of train/ and test/ (test None: one folder of
    classes, split 80/20 when decoded), from the listing; a UserError that names the layout."""
    train_dir, test_dir = _facemask_splits(folder)
    if train_dir is None:
        classes, files = _class_files("facemask", folder, FACEMASK_LAYOUT)
        return classes, files, None
    if test_dir is None:
        raise _missing("facemask", f"test/ or val/ beside {train_dir.name}/", folder, FACEMASK_LAYOUT)
    classes, train = _class_files("facemask", train_dir, FACEMASK_LAYOUT)
    test_classes, test = _class_files("facemask", test_dir, FACEMASK_LAYOUT)
    if test_classes != classes:
        raise UserError(f"facemask: {train_dir} has classes {classes} but {test_dir} has {test_classes}")
    return classes, train, test


def _facemask_read(folder: Path, size: int, progress: bool) -> Loaded:
    classes, train, test = _facemask_files(folder)
    if test is not None:
        return (classes, _split(classes, train, size, progress, "decode facemask/train"),
                _split(classes, test, size, progress, "decode facemask/test"))
    full = _split(classes, train, size, progress, "decode facemask")
    tr, te = stratified_split(full.labels)
    return classes, ImageSplit(full.images[tr], full.labels[tr]), ImageSplit(full.images[te], full.labels[te])


FACEMASK = OnDisk("facemask", FACEMASK_LAYOUT, _facemask_find, _facemask_read, lambda d: _tree(d, 2), _facemask_files)


# --------------------------------------------------------------------------- CIFAR-10 as an image folder
CIFAR10_FOLDER_LAYOUT = "<data_root>/cifar10/{train,test}/<class>/* (image files; classes: the sorted folder names)"


def _cifar10_folder_find(root: Path) -> Path:
    d = root / "cifar10"
    if not ((d / "train").is_dir() and (d / "test").is_dir()):
        raise _missing("cifar10-folder", "cifar10/train/ and cifar10/test/", root, CIFAR10_FOLDER_LAYOUT)
    return d


def _cifar10_folder_files(folder: Path) -> tuple[list[str], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """The classes and the (file, class) pairs of train/ and test/, from the listing."""
    classes, train = _class_files("cifar10-folder", folder / "train", CIFAR10_FOLDER_LAYOUT)
    test_classes, test = _class_files("cifar10-folder", folder / "test", CIFAR10_FOLDER_LAYOUT)
    if test_classes != classes:
        raise UserError(f"cifar10-folder: {folder / 'train'} has classes {classes} but {folder / 'test'} has {test_classes}")
    return classes, train, test


def _cifar10_folder_read(folder: Path, size: int, progress: bool) -> Loaded:
    classes, train, test = _cifar10_folder_files(folder)
    return (classes, _split(classes, train, size, progress, "decode cifar10/train"),
            _split(classes, test, size, progress, "decode cifar10/test"))


CIFAR10_FOLDER = OnDisk("cifar10-folder", CIFAR10_FOLDER_LAYOUT, _cifar10_folder_find, _cifar10_folder_read,
                        lambda d: _tree(d, 2), _cifar10_folder_files)
