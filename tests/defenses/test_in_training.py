"""In-processing defenses change pre-training where PoisonedEncoder's mechanism lives; the
post-processing defense fine-tunes on clean data; all run from the config."""
import json

import numpy as np
import pytest
import torch

from poisonedencoder import config as C
from poisonedencoder.defenses import DEFENSES, build_defense
from poisonedencoder.errors import UserError
from poisonedencoder.ssl.augment import AugmentParams, box_overlap, overlapping_boxes, sample_crop_boxes
from poisonedencoder.ssl.losses import nt_xent


def test_registry_and_settings_are_checked():
    assert set(DEFENSES) == {"none", "part_hash", "large_crops", "overlapping_views", "drop_disagreeing", "finetune"}
    with pytest.raises(UserError, match="defense.overlapping_views.min_overlap"):
        C.resolve({}, ["defense.overlapping_views.min_overlap=0"])
    with pytest.raises(UserError, match="simclr only"):
        C.resolve({}, ["defense.name=drop_disagreeing", "pretrain.algorithm=byol"])


def test_large_crops_raises_the_minimum_crop_scale():
    p = C.resolve({})["pretrain"]
    assert build_defense({"name": "large_crops", "large_crops": {"min_scale": 0.5}}).adjust_pretrain(p)["crop_scale"] == [0.5, 1.0]


def test_overlapping_views_never_split_a_poisoning_input_between_its_halves():
    g = torch.Generator().manual_seed(0)
    p = AugmentParams(view_overlap=0.5)
    first = sample_crop_boxes(4000, 32, 64, p.crop_scale, p.crop_ratio, g)
    second = overlapping_boxes(first, 32, 64, p, g)
    assert (box_overlap(first, second) >= 0.5).all()
    left = lambda b: b[:, 2] <= 32  # noqa: E731
    right = lambda b: b[:, 0] >= 32  # noqa: E731
    split = (left(first) & right(second)) | (right(first) & left(second))
    assert not split.any()
    # without the defense such pairs are common
    free = sample_crop_boxes(4000, 32, 64, p.crop_scale, p.crop_ratio, g)
    assert ((left(first) & right(free)) | (right(first) & left(free))).float().mean() > 0.05
    # and the second view's scale stays free: small second crops remain
    area = (second[:, 2] - second[:, 0]) * (second[:, 3] - second[:, 1]) / (32 * 64)
    assert float(area.min()) < 0.15


def test_nt_xent_without_dropped_pairs_equals_the_loss_of_the_kept_anchors():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    keep = torch.tensor([True, False, True, True, False, True])
    full = [float(nt_xent(z1, z2, 0.5, keep=torch.eye(6, dtype=torch.bool)[i])) for i in range(6)]
    assert abs(float(nt_xent(z1, z2, 0.5, keep=keep)) - np.mean([full[i] for i in range(6) if keep[i]])) < 1e-5


@pytest.mark.parametrize("name", ["part_hash", "finetune"])
def test_pre_and_post_processing_run_from_the_cli(tmp_path, name):
    from poisonedencoder.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("pretrain_data: {dataset: digits, num_images: 600}\ntasks: [{dataset: digits, num_targets: 2}]\n"
                   "attack: {poisoning_rate: 0.05, num_references: 5}\n"
                   "pretrain: {width: 4, image_size: 16, epochs: 1, batch_size: 64, threads: 1}\ndownstream: {epochs: 2}\n")
    args = [str(cfg), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
            "--set", f"defense.name={name}", "--set", "defense.finetune.num_clean=200", "--set", "defense.finetune.epochs=1"]
    assert main(["run", *args]) == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    d = m["defense"]
    assert d["name"] == name
    if name == "part_hash":
        assert d["recall"] == 1.0 and d["precision"] >= 0.9 and d["removed"] >= 30
    else:
        assert d["clean_data_used"] == 200 and m["encoders"]["poisoned"].endswith("finetuned/encoder.pt")
    assert main(["run", str(cfg), "--out", str(tmp_path / "run2"), "--cache-dir", str(tmp_path / "cache"),
                 "--set", "defense.name=finetune", "--set", "defense.finetune.num_clean=100000"]) == 2
