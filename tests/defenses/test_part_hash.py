"""The pre-processing defense finds planted poisoning inputs in a small pre-training set."""
import numpy as np
import pytest

from poisonedencoder.attack import Duplication, PoisonedEncoder, select_targets
from poisonedencoder.data.datasets import _load_digits
from poisonedencoder.defenses import PartHashFilter, score_verdicts
from poisonedencoder.errors import UserError


@pytest.fixture(scope="module")
def digits():
    from poisonedencoder.data import ImageDataset

    classes, train, test = _load_digits(32)
    return ImageDataset("digits", classes, train, test)


def _poisoned_set(ds, attack, n_clean=400):
    targets = select_targets(ds, 0, 3, seed=0)
    poisons = attack.craft(targets, [ds], n_clean)
    clean = list(ds.train.images[-n_clean:])  # the reference inputs come from the start of the split
    images = clean + [p.image for p in poisons]
    return images, np.r_[np.zeros(len(clean), bool), np.ones(len(poisons), bool)]


@pytest.mark.parametrize("attack", [PoisonedEncoder(poisoning_rate=0.075, num_references=10),
                                    Duplication(poisoning_rate=0.075)])
def test_finds_planted_poisoning_inputs(digits, attack):
    images, truth = _poisoned_set(digits, attack)
    report = PartHashFilter()(images)
    s = report.score(truth)
    assert truth.sum() == 30 and s["recall"] == 1.0 and s["precision"] >= 0.9, s
    assert report.removed == s["flagged"] and report.stage == "pre" and report.seconds > 0


def test_clean_data_is_mostly_kept(digits):
    report = PartHashFilter()(list(digits.train.images[:400]))
    assert report.removed <= 8  # at most 2% of clean inputs lost


def test_score_and_bad_settings():
    s = score_verdicts(np.array([True, False, True]), np.array([True, True, False]))
    assert s == {"flagged": 2, "precision": 0.5, "recall": 0.5}
    with pytest.raises(UserError, match="min_group"):
        PartHashFilter(min_group=1)


def test_docstring_examples():
    import doctest

    from poisonedencoder.defenses import base

    assert doctest.testmod(base).failed == 0
