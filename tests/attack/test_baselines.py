"""The baseline attacks behind the common interface: ICP (image-only), target duplication and
Witches' Brew (gradient matching, adapted to contrastive pre-training)."""
import numpy as np
import pytest
import torch

from poisonedencoder import config as C
from poisonedencoder.attack import ATTACKS, ICP, Duplication, WitchesBrew, build_attack, select_targets
from poisonedencoder.attack.icp import blend, overlay
from poisonedencoder.attack.witches_brew import Surrogate
from poisonedencoder.core.errors import UserError
from poisonedencoder.ssl.augment import AugmentParams
from poisonedencoder.ssl.methods import build_method


def _targets(ds, n=2):
    return select_targets(ds, 0, n, seed=0)


def test_every_attack_has_the_same_budget_and_checks_its_settings(toy_dataset):
    assert ATTACKS and all(a.name == n for n, a in ATTACKS.items())
    counts = {}
    for name in ("poisonedencoder", "icp", "duplication"):
        a = build_attack({**C.defaults()["attack"], "name": name, "poisoning_rate": 0.25, "num_references": 3})
        counts[name] = len(a.craft(_targets(toy_dataset), [toy_dataset], 40))
    assert set(counts.values()) == {10}  # 0.25 * 40 clean inputs = 10, 5 per target input
    with pytest.raises(UserError, match="attack.icp.alpha"):
        C.resolve({}, ["attack.name=icp", "attack.icp.alpha=1.5"])
    with pytest.raises(UserError, match="attack.witches_brew.steps"):
        C.resolve({}, ["attack.witches_brew.steps=0"])  # checked even when another attack is chosen
    with pytest.raises(UserError, match="unknown attack"):
        C.resolve({}, ["attack.name=badnets"])
    with pytest.raises(UserError, match="unknown config key 'attack.icp.bogus'"):
        ICP(bogus=1)


def test_icp_blend_and_overlay_carry_target_and_reference(toy_dataset):
    t, r = toy_dataset.test.images[0], toy_dataset.train.images[1]
    b = blend(t, r, 0.3)
    assert b.dtype == np.uint8 and np.abs(b.astype(float) - (0.3 * t + 0.7 * r)).max() <= 0.5
    o = overlay(t, r, 0.5, 0.0, 1.0)  # top right quarter
    assert (o[4:, :] == r[4:, :]).all() and (o[:4, :4] == r[:4, :4]).all() and not (o[:4, 4:] == r[:4, 4:]).all()
    targets = _targets(toy_dataset)
    poisons = ICP(poisoning_rate=0.25, num_references=3).craft(targets, [toy_dataset], 40)
    for p in poisons:
        tgt = targets[p.target_id]
        assert p.reference_index in tgt.reference_indices
        assert toy_dataset.train.labels[p.reference_index] == tgt.target_class
        expect = blend(toy_dataset.test.images[tgt.test_index], toy_dataset.train.images[p.reference_index], 0.5)
        assert (p.image == expect).all() and p.image.shape == (8, 8, 3)


def test_duplication_copies_the_target_input(toy_dataset):
    targets = _targets(toy_dataset)
    poisons = Duplication(poisoning_rate=0.25).craft(targets, [toy_dataset], 40)
    assert len(poisons) == 10
    for p in poisons:
        assert (p.image == toy_dataset.test.images[targets[p.target_id].test_index]).all() and p.reference_index == -1


def _surrogate():
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(width=4, image_size=8)
    torch.manual_seed(0)
    return Surrogate(build_method(p), AugmentParams(size=8, crop_scale=(0.5, 1.0)))


def test_witches_brew_respects_the_budget_and_lowers_gradient_matching(toy_dataset):
    targets = _targets(toy_dataset, 1)
    wb = WitchesBrew(poisoning_rate=0.2, num_references=4, steps=30, epsilon=8 / 255)
    poisons = wb.craft(targets, [toy_dataset], 40, surrogate=_surrogate())
    assert len(poisons) == 8
    for p in poisons:
        ref = toy_dataset.train.images[p.reference_index]
        diff = p.image.astype(int) - ref.astype(int)
        assert p.image.dtype == np.uint8 and np.abs(diff).max() <= 8 and np.abs(diff).max() >= 1
        assert toy_dataset.train.labels[p.reference_index] == targets[0].target_class
    one_step = WitchesBrew(poisoning_rate=0.2, num_references=4, steps=1, step_size=1e-6)
    one_step.craft(_targets(toy_dataset, 1), [toy_dataset], 40, surrogate=_surrogate())
    # the brewed poisons' training gradient points closer to the attacker's than the unbrewed ones'
    assert wb.matching[0] < one_step.matching[0] - 0.02, (wb.matching, one_step.matching)
    assert wb.seconds > 0
