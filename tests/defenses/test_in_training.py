"""In-processing defenses change pre-training where PoisonedEncoder's mechanism lives; the
post-processing defense fine-tunes on clean data; all run from the config."""
import json

import numpy as np
import pytest
import torch

from poisonedencoder import config as C
from poisonedencoder.defenses import DEFENSES, build_defense
from poisonedencoder.core.errors import UserError
from poisonedencoder.ssl.augment import AugmentParams, box_overlap, overlapping_boxes, sample_crop_boxes
from poisonedencoder.ssl.losses import nt_xent


def test_registry_and_settings_are_checked():
    assert "none" in DEFENSES and all(d.name == n for n, d in DEFENSES.items())
    with pytest.raises(UserError, match="defense.overlapping_views.min_overlap"):
        C.resolve({}, ["defense.overlapping_views.min_overlap=0"])
    with pytest.raises(UserError, match="simclr only"):
        C.resolve({}, ["defense.name=drop_disagreeing", "pretrain.algorithm=byol"])


def test_large_crops_raises_the_minimum_crop_scale():
    p = C.resolve({})["pretrain"]
    assert build_defense({"name": "large_crops", "large_crops": {"min_scale": 0.5}}).adjust_pretrain(p)["crop_scale"] == [0.5, 1.0]


def test_overlapping_views_never_split_a_poisoning_input_between_its_halves():
    g = torch.Generator().manual_seed(0)
    p = AugmentParams()
    first = sample_crop_boxes(4000, 32, 64, p.crop_scale, p.crop_ratio, g)
    second = overlapping_boxes(first, 32, 64, p, g, min_overlap=0.5)
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


@pytest.mark.parametrize("name", ["part_hash", "large_crops", "finetune"])
def test_pre_in_and_post_processing_run_from_the_cli(tmp_path, name):
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
    elif name == "large_crops":  # the in-processing defense reached the poisoned encoder's loop, and only it
        from poisonedencoder.core.torch_files import load_torch

        assert load_torch(m["encoders"]["poisoned"])["views"]["crop_scale"] == [0.4, 1.0]
        assert load_torch(m["encoders"]["clean"])["views"]["crop_scale"] == [0.08, 1.0]
    else:
        assert d["clean_data_used"] == 200 and m["encoders"]["poisoned"].endswith("finetuned/encoder.pt")
    assert main(["run", str(cfg), "--out", str(tmp_path / "run2"), "--cache-dir", str(tmp_path / "cache"),
                 "--set", "defense.name=finetune", "--set", "defense.finetune.num_clean=100000"]) == 2


def test_view_pairs_script_measures_split_and_mixed_pairs_and_the_wide_input_fallback():
    """scripts/view_pairs.py: with the paper's crops many pairs of a 32x64 poisoning input show
    different halves; overlapping_views removes the split ones; and above scale 2/3 a 2:1 input
    admits no crop of ratio <= 4/3, so RandomResizedCrop's fallback (the centre crop) gives both
    views the same half-and-half box: no pull left."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "view_pairs.py"
    spec = importlib.util.spec_from_file_location("view_pairs", path)
    vp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vp)
    paper = vp.measure(32, 64, 0.08, 0.0, 20000, 0)
    assert 0.05 < paper["split"] < 0.1 and paper["mixed"] > 0.3
    assert vp.measure(32, 64, 0.08, 0.5, 20000, 0)["split"] == 0
    assert vp.measure(32, 64, 0.4, 0.0, 20000, 0)["mixed"] < paper["mixed"]
    wide = vp.measure(32, 64, 0.7, 0.0, 2000, 0)
    assert wide["mean_diff"] < 0.01
    share = vp.target_share(torch.tensor([[0.0, 0, 32, 32], [16.0, 0, 48, 32], [32.0, 0, 64, 32]]), 32)
    assert share.tolist() == [1.0, 0.5, 0.0]


@pytest.mark.parametrize("key, defense, setting", [("view_overlap", "overlapping_views", "min_overlap"),
                                                    ("drop_disagreeing", "drop_disagreeing", "fraction")])
def test_the_former_pretrain_keys_name_the_defense_to_use(key, defense, setting):
    with pytest.raises(UserError, match=rf"pretrain.{key} is no longer a pretrain setting: use the defense, "
                                        rf"defense.name: {defense} with defense.{defense}.{setting}: 0.3$"):
        C.resolve({"pretrain": {key: 0.3}})
    with pytest.raises(UserError, match=rf"--set pretrain.{key} is no longer"):
        C.resolve({}, [f"pretrain.{key}=0.3"])
    # 0 (off), as every run directory's config.yaml written before the move says: accepted, same run
    assert C.experiment_fingerprint(C.resolve({"pretrain": {key: 0.0}})) == C.experiment_fingerprint(C.resolve({}))
    assert key not in C.resolve({"pretrain": {key: 0.0}})["pretrain"]


def test_a_pair_filter_is_refused_where_the_method_cannot_apply_it(tmp_path):
    from poisonedencoder.ssl.pretrain import PretrainSet, pretrain

    p = C.resolve({"preset": "demo"}, ["pretrain.algorithm=byol"])["pretrain"]
    data = PretrainSet.from_images(np.zeros((p["batch_size"], 8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="defense drop_disagreeing works with pretrain.algorithm simclr only, got 'byol'"):
        pretrain(data, p, tmp_path, pair_filter=build_defense({"name": "drop_disagreeing"}).pair_filter())


def test_a_new_in_training_defense_is_one_class_and_a_registry_line(tmp_path, monkeypatch):
    """docs/DESIGN.md, "How to add a defense": a defense that supplies a pair filter, registered
    in a temporary entry, gets its settings section, is validated and trains the poisoned encoder."""
    from pydantic import Field

    from poisonedencoder.defenses.base import Defense
    from poisonedencoder.core.errors import check_number
    from poisonedencoder.core.torch_files import load_torch
    from poisonedencoder.experiment.pipeline import Experiment
    from poisonedencoder.core.settings import Number, Settings

    calls = []

    class MinCosine:  # the hook: keep the positive pairs whose projections' cosine reaches min_cosine
        source = "agreeing_pairs"

        def __init__(self, t):
            self.t, self.record = t, {"min_cosine": t}

        def __call__(self, z1, z2, z1_all=None, z2_all=None):  # noqa: ARG002 (per pair: no global threshold)
            calls.append(len(z1))
            return torch.nn.functional.cosine_similarity(z1.detach(), z2.detach(), dim=1) >= self.t

    class AgreeingPairsSettings(Settings):
        min_cosine: Number = Field(0.0, description="positive pairs whose projections' cosine is below this leave the loss")

        def check(self, where):
            check_number(self.min_cosine, f"{where}.min_cosine", -1, 1)

    class AgreeingPairs(Defense):
        name, stage = "agreeing_pairs", "in"
        Settings = AgreeingPairsSettings

        def pair_filter(self):
            return MinCosine(self.settings.min_cosine)

    monkeypatch.setitem(DEFENSES, AgreeingPairs.name, AgreeingPairs)
    user = {"pretrain_data": {"dataset": "digits", "num_images": 300}, "tasks": [{"dataset": "digits", "num_targets": 1}],
            "attack": {"poisoning_rate": 0.05, "num_references": 5}, "cache_dir": str(tmp_path / "cache"),
            "pretrain": {"width": 4, "image_size": 16, "epochs": 1, "batch_size": 64, "threads": 1}}
    with pytest.raises(UserError, match="defense.agreeing_pairs.min_cosine"):
        C.resolve(user, ["defense.name=agreeing_pairs", "defense.agreeing_pairs.min_cosine=2"])
    with pytest.raises(UserError, match="defense agreeing_pairs works with pretrain.algorithm simclr only"):
        C.resolve(user, ["defense.name=agreeing_pairs", "pretrain.algorithm=simsiam"])
    cfg = C.resolve(user, ["defense.name=agreeing_pairs", "defense.agreeing_pairs.min_cosine=0.25"])
    paths = Experiment(cfg, tmp_path / "run", log=lambda _: None).pretrain("poisoned")
    steps = (300 + 15) // 64  # clean and poisoning inputs, full batches
    assert calls == [64] * steps  # the filter saw every step of the poisoned encoder's one epoch
    assert load_torch(paths["poisoned"])["views"] == {"crop_scale": [0.08, 1.0], "view_overlap": 0.0,
                                                      "drop_disagreeing": 0.0, "min_cosine": 0.25}
