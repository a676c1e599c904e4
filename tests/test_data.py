import numpy as np
import pytest
from PIL import Image

from poisonedencoder.data import load_dataset
from poisonedencoder.core.errors import UserError


def _folder(root, corrupt=False):
    for split, n in (("train", 3), ("test", 2)):
        for ci, c in enumerate(("cat", "ant")):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((10, 12, 3), 40 * ci + i, np.uint8)).save(d / f"{i}.png")
    if corrupt:
        (root / "train" / "cat" / "9.jpg").write_bytes(b"garbage")


def test_imagefolder_sorted_classes_resize_and_cache(tmp_path):
    _folder(tmp_path / "data")
    ds = load_dataset(f"imagefolder:{tmp_path / 'data'}", 8, cache_dir=tmp_path / "cache", progress=False)
    assert ds.classes == ["ant", "cat"]
    assert ds.train.images.shape == (6, 8, 8, 3) and ds.train.images.dtype == np.uint8
    assert ds.test.images.shape == (4, 8, 8, 3)
    assert sorted(ds.train.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert list((tmp_path / "cache" / "datasets").glob("*.npz"))
    again = load_dataset(f"imagefolder:{tmp_path / 'data'}", 8, cache_dir=tmp_path / "cache")
    assert (again.train.images == ds.train.images).all()


def test_corrupt_image_names_the_file(tmp_path):
    _folder(tmp_path / "data", corrupt=True)
    with pytest.raises(UserError, match="9.jpg"):
        load_dataset(f"imagefolder:{tmp_path / 'data'}", 8, cache_dir=tmp_path / "cache", progress=False)


def test_unknown_dataset_and_missing_folder(tmp_path):
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("mnist-but-typo", cache_dir=tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}", cache_dir=tmp_path)


def test_digits_is_embedded(tmp_path):
    ds = load_dataset("digits", 16, cache_dir=tmp_path)
    assert ds.num_classes == 10 and ds.train.images.shape[1:] == (16, 16, 3)
    assert len(ds.train) + len(ds.test) == 1797


def test_offline_torchvision_dataset_names_the_data_root(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*_args, download=False, **_kwargs):
        raise RuntimeError("Dataset not found" if not download else "URLError: no network")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(UserError, match=f"dataset cifar10 not found under {tmp_path / 'root'} and not downloaded "
                                        r"\(RuntimeError; set --data-root or POISONEDENCODER_DATA\); get it: .*kriz/cifar"):
        load_dataset("cifar10", 32, data_root=tmp_path / "root", cache_dir=tmp_path / "cache")


def test_fashion_mnist_from_idx_files_needs_no_download(tmp_path, write_idx):
    root = tmp_path / "root"
    root.mkdir()
    rng = np.random.default_rng(0)
    tr, te = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 256, (4, 28, 28))
    write_idx(root / "train-images-idx3-ubyte.gz", tr)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.arange(6) % 10)
    write_idx(root / "t10k-images-idx3-ubyte.gz", te)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.array([9, 8, 7, 6]))
    ds = load_dataset("fashion-mnist", 28, data_root=root, cache_dir=tmp_path / "cache")
    assert ds.classes[9] == "Ankle boot" and ds.train.images.shape == (6, 28, 28, 3)
    assert (ds.train.images[..., 0] == tr).all() and (ds.train.images[..., 2] == tr).all()
    assert ds.test.labels.tolist() == [9, 8, 7, 6]
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(UserError, match="t10k-labels"):
        load_dataset("fashion-mnist", 28, data_root=root, cache_dir=tmp_path / "cache2")
