"""The pre-processing defense finds planted poisoning inputs in a small pre-training set."""
import numpy as np
import pytest

from poisonedencoder.attack import Duplication, PoisonedEncoder, select_targets
from poisonedencoder.data.datasets import _load_digits
from poisonedencoder.defenses import PartHashFilter, score_verdicts
from poisonedencoder.core.errors import UserError


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


@pytest.mark.parametrize("min_group", [2, 5, 12])
def test_the_score_is_the_largest_shared_group_and_the_verdict_is_score_at_least_min_group(digits, min_group):
    images, truth = _poisoned_set(digits, PoisonedEncoder(poisoning_rate=0.075, num_references=10))
    f = PartHashFilter(min_group=min_group)
    scores = f.scores(images)
    assert (f(images).verdicts == (scores >= min_group)).all()
    assert scores.min() >= 1 and scores[truth].min() >= 10  # 10 poisoning inputs per target share its half
    assert np.median(scores[~truth]) == 1  # a clean input shares no part


def test_part_hash_scores_on_a_hand_case():
    rng = np.random.default_rng(0)
    shared = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    composites = [np.concatenate([shared, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)], 1) for _ in range(3)]
    lone = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
    flat = np.full((16, 16, 3), 7, np.uint8)  # no part with content: shares nothing
    assert PartHashFilter(max_distance=0).scores(composites + [lone, flat]).tolist() == [3, 3, 3, 1, 1]
