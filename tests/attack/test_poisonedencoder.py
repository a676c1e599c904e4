import numpy as np
import pytest

from poisonedencoder.attack import PoisonedEncoder, compose, select_references, select_targets
from poisonedencoder.core.errors import UserError


def test_compose_left_right_holds_both_parts():
    t = np.full((8, 8, 3), 10, np.uint8)
    r = np.full((8, 8, 3), 250, np.uint8)
    p = compose(t, r, "left-right", target_first=True)
    assert p.shape == (8, 16, 3)
    assert (p[:, :8] == t).all() and (p[:, 8:] == r).all()
    p = compose(t, r, "left-right", target_first=False)
    assert (p[:, :8] == r).all() and (p[:, 8:] == t).all()


def test_compose_top_bottom_with_gap():
    t = np.zeros((8, 8, 3), np.uint8)
    r = np.full((8, 8, 3), 255, np.uint8)
    p = compose(t, r, "top-bottom", gap=3)
    assert p.shape == (19, 8, 3)
    assert (p[:8] == 0).all() and (p[8:11] == 128).all() and (p[11:] == 255).all()


def test_craft_counts_match_rate_and_references_are_train_inputs_of_the_target_class(toy_dataset):
    ds = toy_dataset
    targets = select_targets(ds, 0, num_targets=4, seed=1)
    attack = PoisonedEncoder(poisoning_rate=0.1, num_references=3, seed=0)
    poisons = attack.craft(targets, [ds], num_clean=400)
    assert len(poisons) == round(0.1 * 400 / 4) * 4 == 40
    for tid, t in enumerate(targets):
        assert t.target_class != t.true_class
        mine = [p for p in poisons if p.target_id == tid]
        assert len(mine) == 10
        assert len(t.reference_indices) == 3
        assert all(ds.train.labels[r] == t.target_class for r in t.reference_indices)
        timg = ds.test.images[t.test_index]
        for p in mine:
            assert p.reference_index in t.reference_indices
            h, w = timg.shape[:2]
            assert p.image.shape == ((h, 2 * w, 3) if p.kind == "left-right" else (2 * h, w, 3))
            a, b = (p.image[:, :w], p.image[:, w:]) if p.kind == "left-right" else (p.image[:h], p.image[h:])
            tpart, rpart = (a, b) if p.target_first else (b, a)
            assert (tpart == timg).all()
            assert (rpart == ds.train.images[p.reference_index]).all()
    layouts = {p.kind for p in poisons}
    assert layouts == {"left-right", "top-bottom"}  # random layout uses both


def test_fixed_layout_and_order(toy_dataset):
    targets = select_targets(toy_dataset, 0, num_targets=2, seed=0)
    poisons = PoisonedEncoder(0.05, 2, layout="top-bottom", order="reference-first").craft(targets, [toy_dataset], 200)
    assert all(p.kind == "top-bottom" and not p.target_first for p in poisons)


@pytest.mark.parametrize("kwargs", [dict(poisoning_rate=0), dict(poisoning_rate=1.5), dict(num_references=0),
                                    dict(layout="diagonal"), dict(order="sideways"), dict(gap=-1)])
def test_parameters_are_checked(kwargs):
    with pytest.raises(UserError):
        PoisonedEncoder(**kwargs)


def test_too_many_references(toy_dataset):
    with pytest.raises(UserError, match="num_references"):
        select_references(toy_dataset, 0, 11, np.random.default_rng(0))


def test_explicit_target_class_outside_classes(toy_dataset):
    with pytest.raises(UserError, match="outside"):
        select_targets(toy_dataset, 0, explicit=[{"index": 0, "target_class": 7}])
    with pytest.raises(UserError, match="not a class"):
        select_targets(toy_dataset, 0, explicit=[{"index": 0, "target_class": "zebra"}])
    t = select_targets(toy_dataset, 0, explicit=[{"index": 3, "target_class": "b"}])
    assert t[0].target_class == 1 and t[0].test_index == 3


def test_typical_references_are_the_inputs_closest_to_their_class_mean(toy_dataset):
    from poisonedencoder.attack.targets import class_typicality

    ds = toy_dataset
    feats = ds.train.images.reshape(len(ds.train), -1).astype(float)
    score = class_typicality(feats, ds.train.labels, ds.num_classes)
    assert score.shape == (len(ds.train),) and (score <= 1 + 1e-9).all()
    # plant an outlier in class 2: it must never be picked while a more typical input remains
    out = int(np.flatnonzero(ds.train.labels == 2)[0])
    feats[out] = feats[ds.train.labels == 0].mean(0)
    score = class_typicality(feats, ds.train.labels, ds.num_classes)
    pool = np.flatnonzero(ds.train.labels == 2)
    refs = select_references(ds, 2, len(pool) - 1, np.random.default_rng(0), typicality=score)
    assert out not in refs and len(refs) == len(pool) - 1
    assert set(refs) == set(pool[np.argsort(-score[pool])][: len(pool) - 1].tolist())
    with pytest.raises(UserError, match="reference_selection"):
        PoisonedEncoder(reference_selection="best")
