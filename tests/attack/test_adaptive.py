"""The adaptive PoisonedEncoder settings: ``shape: square`` (the clean inputs' size, against the
aspect-ratio filter), ``layout: 2x2`` and ``target_variation`` (a different transform of the target
input per poisoning input, against the part-hash filter); and that their defaults change nothing."""
import numpy as np
import pytest

from poisonedencoder import config as C
from poisonedencoder.attack import PoisonedEncoder, select_targets
from poisonedencoder.attack.export import target_box
from poisonedencoder.attack.poisonedencoder import compose, compose_square, resize, vary
from poisonedencoder.defenses import build_defense
from poisonedencoder.core.errors import UserError


def _craft(ds, seed=0, **settings):
    targets = select_targets(ds, 0, num_targets=2, seed=1)
    attack = PoisonedEncoder(poisoning_rate=0.2, num_references=3, seed=seed, **settings)
    return attack, targets, attack.craft(targets, [ds], num_clean=60)


def _region(p, box):
    top, left, bottom, right = box
    return p.image[top:bottom, left:right]


@pytest.mark.parametrize("layout", ["left-right", "top-bottom", "2x2", "random"])
def test_square_poisoning_inputs_have_the_clean_shape_and_hold_the_resized_target(toy_dataset, layout):
    attack, targets, poisons = _craft(toy_dataset, shape="square", layout=layout)
    clean = toy_dataset.train.images[0].shape
    assert {p.image.shape for p in poisons} == {clean}  # 8x8, not 8x16 / 16x8
    for p in poisons:
        timg = toy_dataset.test.images[targets[p.target_id].test_index]
        region = _region(p, attack.target_box(p))
        assert region.shape[:2] in ((8, 4), (4, 8), (4, 4))
        assert (region == resize(timg, *region.shape[:2])).all()
    assert not build_defense({"name": "aspect_ratio"}).filter(list(toy_dataset.train.images) + [p.image for p in poisons]).verdicts.any()


def test_paper_shape_is_caught_by_the_aspect_ratio_filter_and_square_is_not(toy_dataset):
    clean = list(toy_dataset.train.images)
    f = build_defense({"name": "aspect_ratio"})
    paper = [p.image for p in _craft(toy_dataset)[2]]
    square = [p.image for p in _craft(toy_dataset, shape="square")[2]]
    assert f.filter(clean + paper).verdicts[len(clean):].all()
    assert not f.filter(clean + square).verdicts.any()


def test_square_parts_split_the_canvas_and_the_gap_is_gray():
    t, r = np.full((8, 8, 3), 10, np.uint8), np.full((8, 8, 3), 250, np.uint8)
    p = compose_square(t, r, "left-right", True)
    assert p.shape == (8, 8, 3) and (p[:, :4] == 10).all() and (p[:, 4:] == 250).all()
    p = compose_square(t, r, "top-bottom", False, gap=2)
    assert (p[:3] == 250).all() and (p[3:5] == 128).all() and (p[5:] == 10).all()
    p = compose_square(t, r, "2x2", True)
    assert (p[:4, :4] == 10).all() and (p[4:, 4:] == 10).all() and (p[:4, 4:] == 250).all() and (p[4:, :4] == 250).all()
    with pytest.raises(UserError, match="gap 7 leaves no room"):
        compose_square(t, r, "left-right", gap=7)


def test_paper_2x2_tiles_both_diagonals_at_full_size():
    t, r = np.full((8, 8, 3), 10, np.uint8), np.full((8, 8, 3), 250, np.uint8)
    p = compose(t, r, "2x2", target_first=False, gap=1)
    assert p.shape == (17, 17, 3)
    assert (p[:8, :8] == 250).all() and (p[9:, 9:] == 250).all() and (p[:8, 9:] == 10).all() and (p[9:, :8] == 10).all()
    assert (p[8] == 128).all() and (p[:, 8] == 128).all()


def test_resize_is_antialiased():
    """A 1-pixel checkerboard shrunk to half its size is an even gray (within the border), not one phase."""
    board = ((np.indices((8, 8)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, 2)
    small = resize(board, 4, 4)
    assert small.shape == (4, 4, 3) and np.abs(small.astype(int) - 128).max() <= 4  # aliased: 0 or 255


def test_without_variation_every_poisoning_input_of_a_target_holds_it_unchanged(toy_dataset):
    _, targets, poisons = _craft(toy_dataset, layout="left-right", order="target-first")
    for p in poisons:
        assert (p.image[:, :8] == toy_dataset.test.images[targets[p.target_id].test_index]).all()


@pytest.mark.parametrize("shape", ["paper", "square"])
def test_with_variation_each_poisoning_input_carries_its_own_transform_of_the_target(toy_dataset, shape):
    attack, targets, poisons = _craft(toy_dataset, layout="left-right", order="target-first", shape=shape,
                                      target_variation=1.0)
    for tid, t in enumerate(targets):
        timg = toy_dataset.test.images[t.test_index].astype(float)
        parts = [_region(p, attack.target_box(p)).astype(float) for p in poisons if p.target_id == tid]
        assert len(parts) == 6
        assert all(np.abs(a - b).max() > 0 for i, a in enumerate(parts) for b in parts[i + 1:])  # all differ
        want = resize(timg.astype(np.uint8), *parts[0].shape[:2]).astype(float)
        for part in parts:  # still the target: closer to it than to any other class's inputs
            others = [resize(im, *part.shape[:2]).astype(float) for im in toy_dataset.train.images[toy_dataset.train.labels != t.true_class][:5]]
            assert np.abs(part - want).mean() < min(np.abs(part - o).mean() for o in others)


def test_variation_strength_bounds_the_transform():
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert vary(img, 0.0, rng) is img
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state  # nothing drawn at 0
    weak = np.mean([np.abs(vary(img, 0.1, rng).astype(int) - img).mean() for _ in range(20)])
    strong = np.mean([np.abs(vary(img, 1.0, rng).astype(int) - img).mean() for _ in range(20)])
    assert 0 < weak < strong and vary(img, 1.0, rng).shape == img.shape


def test_variation_is_reproducible_given_the_seed(toy_dataset):
    a = [p.image for p in _craft(toy_dataset, seed=3, shape="square", target_variation=0.5)[2]]
    b = [p.image for p in _craft(toy_dataset, seed=3, shape="square", target_variation=0.5)[2]]
    c = [p.image for p in _craft(toy_dataset, seed=4, shape="square", target_variation=0.5)[2]]
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert any((x != y).any() for x, y in zip(a, c, strict=True))


def test_variation_defeats_the_part_hash_filter_on_exact_repeats():
    """Twelve poisoning inputs of one target: the part-hash filter links the unchanged target
    halves; with variation each half is its own image (the inputs are random, so only repeats match)."""
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    refs = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    clean = list(rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8))
    f = build_defense({"name": "part_hash"})
    plain = [compose_square(target, r) for r in refs]
    assert f.filter(clean + plain).verdicts[30:].all()
    g = np.random.default_rng(1)
    varied = [compose_square(vary(target, 1.0, g), r) for r in refs]
    assert f.filter(clean + varied).verdicts[30:].mean() < 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(shape="round"), "attack.poisonedencoder.shape must be paper or square, got 'round'"),
    (dict(target_variation=1.5), r"attack.poisonedencoder.target_variation must be in \[0, 1\], got 1.5"),
    (dict(target_variation=-0.1), r"attack.poisonedencoder.target_variation must be in \[0, 1\]"),
    (dict(target_variation="high"), "attack.poisonedencoder.target_variation must be a number"),
    (dict(layout="3x3"), "layout must be random, left-right, top-bottom or 2x2"),
])
def test_the_new_settings_are_checked(kwargs, message):
    with pytest.raises(UserError, match=message):
        PoisonedEncoder(**kwargs)


def test_target_box_of_the_2x2_tiling():
    from poisonedencoder.attack.base import PoisoningInput

    img = np.zeros((17, 17, 3), np.uint8)
    assert target_box(PoisoningInput(img, 0, 0, "2x2", True), gap=1) == (0, 0, 8, 8)
    assert target_box(PoisoningInput(img, 0, 0, "2x2", False), gap=1) == (0, 9, 8, 17)


def test_the_defaults_craft_the_paper_inputs_byte_for_byte(toy_dataset):
    """The poisoning inputs of the default settings, pinned as the attack made them before
    ``shape`` and ``target_variation`` existed (sha256 of images, kinds and orders)."""
    import hashlib

    h = hashlib.sha256()
    for kw in ({}, {"gap": 2, "layout": "top-bottom"}):
        targets = select_targets(toy_dataset, 0, num_targets=3, seed=1)
        for p in PoisonedEncoder(0.2, 4, seed=5, **kw).craft(targets, [toy_dataset], 60):
            h.update(p.image.tobytes())
            h.update(p.kind.encode())
            h.update(bytes([p.target_first]))
    assert h.hexdigest()[:16] == "18abf57f3b8eede2"


# ------------------------------------------------------------------------------------- fingerprints
def test_the_new_settings_at_their_defaults_leave_the_fingerprint_unchanged():
    base = C.experiment_fingerprint(C.resolve({}))
    same = [["attack.poisonedencoder.shape=paper"], ["attack.poisonedencoder.target_variation=0"],
            ["attack.poisonedencoder.target_variation=0.0", "attack.poisonedencoder.shape=paper"]]
    for over in same:
        assert C.experiment_fingerprint(C.resolve({}, over)) == base, over
    changed = {C.experiment_fingerprint(C.resolve({}, [o])) for o in
               ("attack.poisonedencoder.shape=square", "attack.poisonedencoder.target_variation=0.5",
                "attack.poisonedencoder.layout=2x2")}
    assert base not in changed and len(changed) == 3


def test_added_later_drops_only_its_own_settings_at_their_value():
    from typing import Annotated

    from poisonedencoder.config.fingerprints import _without_added_later
    from poisonedencoder.core.settings import ADDED_LATER, Number, Settings

    class PSettings(Settings):
        new: Annotated[Number, ADDED_LATER] = 0.0
        mode: Annotated[str, ADDED_LATER] = "old"
        gap: int = 0

    class P:
        Settings = PSettings

    assert PSettings.added_later() == {"new": 0.0, "mode": "old"}
    s = {"new": 0, "mode": "old", "gap": 0}
    assert _without_added_later(s, P) == {"gap": 0}
    assert _without_added_later({**s, "new": 0.1}, P) == {"new": 0.1, "gap": 0}
    assert _without_added_later({**s, "new": False}, P) == {"new": False, "gap": 0}  # a bool is not the number 0
    assert _without_added_later(s, None) == s  # a name that no plugin has: nothing dropped
