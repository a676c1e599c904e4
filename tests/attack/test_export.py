import pytest

from poisonedencoder.attack import PoisonedEncoder, compose, select_targets
from poisonedencoder.attack.export import load_poisons, save_grid, save_poisons
from poisonedencoder.core.errors import UserError


def test_png_and_manifest_round_trip(toy_dataset, tmp_path):
    targets = select_targets(toy_dataset, 0, num_targets=2, seed=0)
    poisons = PoisonedEncoder(0.1, 2).craft(targets, [toy_dataset], 100)
    save_poisons(poisons, targets, tmp_path / "p")
    manifest, images = load_poisons(tmp_path / "p")
    assert manifest["num_poisoning_inputs"] == len(poisons) == len(images)
    for p, img, e in zip(poisons, images, manifest["poisoning_inputs"], strict=True):
        assert (img == p.image).all()
        assert e["shape"] == list(p.image.shape)
    assert [t["reference_indices"] for t in manifest["targets"]] == [t.reference_indices for t in targets]
    assert save_grid(images, tmp_path / "grid.png").stat().st_size > 0


def test_corrupt_poison_file_is_a_user_error(toy_dataset, tmp_path):
    targets = select_targets(toy_dataset, 0, num_targets=1, seed=0)
    save_poisons(PoisonedEncoder(0.1, 1).craft(targets, [toy_dataset], 30), targets, tmp_path)
    (tmp_path / "000000.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="000000.png"):
        load_poisons(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(UserError, match="corrupt"):
        load_poisons(tmp_path)


@pytest.mark.parametrize("layout", ["left-right", "top-bottom"])
@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("gap", [0, 3])
def test_target_box_is_where_compose_put_the_target(toy_dataset, layout, first, gap):
    from poisonedencoder.attack import PoisoningInput
    from poisonedencoder.attack.export import target_box

    t, r = toy_dataset.test.images[0], toy_dataset.train.images[1]
    p = PoisoningInput(compose(t, r, layout, first, gap), 0, 1, layout, first)
    top, left, bottom, right = target_box(p, gap)
    assert (p.image[top:bottom, left:right] == t).all()


def test_grid_marks_the_target_half_and_names_each_tiles_target(toy_dataset, tmp_path):
    import numpy as np
    from PIL import Image

    from poisonedencoder.attack.export import target_box

    targets = select_targets(toy_dataset, 0, num_targets=2, seed=0)
    poisons = PoisonedEncoder(0.1, 2, layout="left-right", order="target-first").craft(targets, [toy_dataset], 40)
    assert {p.target_id for p in poisons} == {0, 1}
    plain = np.asarray(Image.open(save_grid([p.image for p in poisons], tmp_path / "plain.png", scale=4, pad=2)))
    grid = np.asarray(Image.open(save_grid([p.image for p in poisons], tmp_path / "g.png", scale=4, pad=2,
                                           labels=[f"T{p.target_id}" for p in poisons],
                                           boxes=[target_box(p) for p in poisons], legend="legend")))
    assert grid.shape[0] > plain.shape[0]  # room for the legend and the captions
    head, cap, pad, s = 16, 14, 2, 4
    h, w = poisons[0].image.shape[:2]
    red = (grid[..., 0] == 255) & (grid[..., 1] == 0) & (grid[..., 2] == 0)
    for k in range(len(poisons)):
        r, c = divmod(k, 8)
        y, x = head + r * (h * s + cap + pad) + pad, c * (w * s + pad) + pad
        tile = red[y:y + h * s, x:x + w * s]
        assert tile[:, : w // 2 * s].any(axis=0).sum() > 0 and not tile[:, w // 2 * s + 2:].any()  # frame: target half only
        assert (caption(grid, k) < 128).any()  # a caption under every tile
    ids = [p.target_id for p in poisons]
    same, other = [k for k in range(len(ids)) if ids[k] == 0][:2], ids.index(1)
    assert (caption(grid, same[0]) == caption(grid, same[1])).all()  # the caption names the target
    assert (caption(grid, same[0]) != caption(grid, other)).any()


def caption(grid, k, head=16, cap=14, pad=2, s=4, h=8, w=16):
    r, c = divmod(k, 8)
    y, x = head + r * (h * s + cap + pad) + pad, c * (w * s + pad) + pad
    return grid[y + h * s: y + h * s + cap, x: x + w * s]


def test_crafting_twice_writes_the_same_manifest_bytes(tmp_path):
    """Timings go to poisons/timing.json, so the manifest and the PNGs are byte-reproducible."""
    import json

    from poisonedencoder import config as C
    from poisonedencoder.experiment.pipeline import Experiment

    cfg = C.resolve({"preset": "demo", "cache_dir": str(tmp_path / "cache")}, ["attack.poisoning_rate=0.05"])
    dirs = []
    for name in ("a", "b"):
        Experiment(cfg, tmp_path / name, log=lambda _: None).craft()
        dirs.append(tmp_path / name / "poisons")
    files = sorted(p.name for p in dirs[0].iterdir())
    assert "manifest.json" in files and "timing.json" in files and len(files) > 10
    assert files == sorted(p.name for p in dirs[1].iterdir())
    for f in files:
        if f != "timing.json":
            assert (dirs[0] / f).read_bytes() == (dirs[1] / f).read_bytes(), f
    assert "seconds" not in (dirs[0] / "manifest.json").read_text()
    assert json.loads((dirs[0] / "timing.json").read_text())["craft_seconds"] >= 0
