"""The contract of every registered attack (a new one is checked by being registered): the
budget, the pixel range, its reference inputs, a target box inside the image; and a plugin
without ``make`` fails when it is defined."""
import numpy as np
import pytest

from poisonedencoder import config as C
from poisonedencoder.attack import ATTACKS, Attack, build_attack, select_targets
from poisonedencoder.attack.base import poisons_per_target

SMALL = {"witches_brew": {"steps": 2}}  # settings that keep a test fast


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_respects_the_budget_and_the_pixel_range(name, toy_dataset, tiny_surrogate):
    a = build_attack({**C.defaults()["attack"], "name": name, "poisoning_rate": 0.2, "num_references": 4,
                      name: {**ATTACKS[name].Settings.defaults(), **SMALL.get(name, {})}}, seed=3)
    targets = select_targets(toy_dataset, 0, 2, seed=0)
    per = poisons_per_target(0.2, 40, 2)
    poisons = a.craft(targets, [toy_dataset], 40, surrogate=tiny_surrogate if a.needs_surrogate else None)
    assert per == 4 and len(poisons) == 2 * per
    assert [p.target_id for p in poisons] == [0] * per + [1] * per
    for p in poisons:
        t = targets[p.target_id]
        assert p.image.dtype == np.uint8 and p.image.ndim == 3 and p.image.shape[2] == 3
        assert p.image.shape[0] >= 8 and p.image.shape[1] >= 8  # at least the target input's size
        assert p.reference_index == -1 or (p.reference_index in t.reference_indices
                                           and toy_dataset.train.labels[p.reference_index] == t.target_class)
        assert isinstance(p.kind, str) and p.kind
        box = a.target_box(p)
        if box is not None:
            top, left, bottom, right = box
            assert 0 <= top < bottom <= p.image.shape[0] and 0 <= left < right <= p.image.shape[1]
            assert (p.image[top:bottom, left:right] == toy_dataset.test.images[t.test_index]).all()


def test_an_attack_without_make_fails_when_it_is_defined():
    with pytest.raises(TypeError, match="must implement make"):
        class NoMake(Attack):  # noqa: F841 (defining it is the test)
            name = "nomake"


def test_the_reference_inputs_do_not_depend_on_the_attack(toy_dataset):
    """They are chosen before any attack crafts: every attack of a configuration uses the same."""
    refs = {}
    for name in ("poisonedencoder", "icp", "duplication"):
        targets = select_targets(toy_dataset, 0, 2, seed=0)
        build_attack({**C.defaults()["attack"], "name": name, "num_references": 4}, seed=5).craft(targets, [toy_dataset], 40)
        refs[name] = [t.reference_indices for t in targets]
    assert refs["poisonedencoder"] == refs["icp"] == refs["duplication"]
