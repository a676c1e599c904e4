import pytest

from poisonedencoder.attack import PoisonedEncoder, select_targets
from poisonedencoder.attack.export import load_poisons, save_grid, save_poisons
from poisonedencoder.errors import UserError


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
