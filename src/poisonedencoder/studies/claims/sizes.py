"""The size of the recipe's train split, on which the fine-tuning and race arms' sizes depend:
decoded once (:func:`train_size`), or only where that needs no download and writes nothing
(:func:`train_size_here`, for reading a table)."""
from __future__ import annotations

from pathlib import Path


def train_size(cfg: dict) -> int:
    """How many train inputs the recipe's pre-training dataset has (decoded once, then cached)."""
    from ...data import load_dataset
    from ...data.datasets import DEFAULT_CACHE

    ds = load_dataset(cfg["pretrain_data"]["dataset"], cfg["pretrain"]["image_size"], cfg["data_root"],
                      Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else DEFAULT_CACHE, progress=False)
    return len(ds.train)


def train_size_here(cfg: dict) -> int | None:
    """:func:`train_size` without downloading, decoding into the cache or writing anything: from the
    decoded cache where it holds the dataset, decoded in memory where the dataset needs no files
    (digits, shipped with scikit-learn), else None."""
    from ...data.datasets import DEFAULT_CACHE, DEFAULT_DATA_ROOT, cached_train_size, dataset_source

    spec, px = cfg["pretrain_data"]["dataset"], cfg["pretrain"]["image_size"]
    root = Path(cfg["data_root"]).expanduser() if cfg["data_root"] else DEFAULT_DATA_ROOT
    n = cached_train_size(spec, px, root, Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else DEFAULT_CACHE)
    if n is None and spec == "digits":
        _, train, _ = dataset_source(spec).load(spec, px, root, False)
        n = len(train.labels)
    return n
