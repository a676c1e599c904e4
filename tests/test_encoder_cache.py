"""Encoders kept by what they were trained on (encoder_cache): the key changes with every input of a
pre-training and only with them, an equal pre-training takes the kept encoder instead of training,
and the premise holds: two trainings of equal inputs, settings and seed give equal weights."""
import json

import numpy as np
import pytest
import torch

from poisonedencoder import config as C
from poisonedencoder.experiment import encoder_cache as EC
from poisonedencoder.ssl.pretrain_set import PretrainSet
from poisonedencoder.experiment.stages import pretrain_encoder


def _images(seed=0, n=64, size=16):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _pretrain():
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(width=4, image_size=16, epochs=2, batch_size=32, threads=1, snapshot_every=0)
    return p


def test_the_key_is_equal_for_equal_pre_trainings_and_changes_with_each_input():
    clean, poisons, p = _images(), list(_images(1, 3, 16).repeat(2, axis=2)), _pretrain()
    key = EC.content_key(PretrainSet.from_images(clean, poisons), p, 0, "cpu")
    assert EC.content_key(PretrainSet.from_images(clean.copy(), [x.copy() for x in poisons]), dict(p), 0, "cpu") == key
    one_pixel = clean.copy()
    one_pixel[5, 3, 3, 1] ^= 1
    reordered = clean[::-1].copy()
    changed = {
        "a pixel": EC.content_key(PretrainSet.from_images(one_pixel, poisons), p, 0, "cpu"),
        "the order": EC.content_key(PretrainSet.from_images(reordered, poisons), p, 0, "cpu"),
        "a poisoning input less": EC.content_key(PretrainSet.from_images(clean, poisons[:-1]), p, 0, "cpu"),
        "the seed": EC.content_key(PretrainSet.from_images(clean, poisons), p, 1, "cpu"),
        "a setting": EC.content_key(PretrainSet.from_images(clean, poisons), {**p, "lr": p["lr"] * 2}, 0, "cpu"),
        "the crop scale": EC.content_key(PretrainSet.from_images(clean, poisons), {**p, "crop_scale": [0.7, 1.0]}, 0, "cpu"),
        # the same images, but the statistics from a different clean set
        "the statistics": EC.content_key(PretrainSet.from_images(clean[:32], [*clean[32:], *poisons]), p, 0, "cpu"),
    }
    assert key not in changed.values() and len(set(changed.values())) == len(changed)


def test_two_trainings_of_equal_inputs_give_equal_weights(tmp_path):
    """The premise of the cache: on one machine pre-training is a function of its key's inputs."""
    p, clean = _pretrain(), _images()
    a = pretrain_encoder("a", lambda: PretrainSet.from_images(clean), p, tmp_path / "a", 0, "cpu", log=lambda _: None)
    b = pretrain_encoder("b", lambda: PretrainSet.from_images(clean.copy()), p, tmp_path / "b", 0, "cpu", log=lambda _: None)
    wa, wb = (torch.load(x, weights_only=True)["backbone"] for x in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_an_equal_pre_training_takes_the_kept_encoder_and_a_different_one_trains(tmp_path, monkeypatch):
    import poisonedencoder.ssl.pretrain as P

    p, clean, cache, logs = _pretrain(), _images(), tmp_path / "cache", []
    first = pretrain_encoder("clean", lambda: PretrainSet.from_images(clean), p, tmp_path / "first", 0, "cpu",
                             log=logs.append, cache=cache)
    key = EC.published_key(first.parent)
    assert key and (cache / "pretrained" / key / "encoder.pt").read_bytes() == first.read_bytes()

    trained = []
    real = P.pretrain
    monkeypatch.setattr(P, "pretrain", lambda *a, **k: trained.append(k.get("desc")) or real(*a, **k))
    # a filter that removed every poisoning input and no clean one: the set is the clean set
    again = pretrain_encoder("poisoned", lambda: PretrainSet.from_images(clean.copy(), []), p, tmp_path / "run", 0,
                             "cpu", log=logs.append, cache=cache)
    assert trained == [] and again.read_bytes() == first.read_bytes()
    assert json.loads((again.parent / EC.REUSED_FILE).read_text())["content_key"] == key
    assert any("reusing it" in line for line in logs)

    # one poisoning input more, another seed, no cache, or an in-training defense's hooks: trained
    pretrain_encoder("one_more", lambda: PretrainSet.from_images(clean, [_images(2, 1, 16)[0]]), p, tmp_path / "m", 0,
                     "cpu", log=logs.append, cache=cache)
    pretrain_encoder("seed", lambda: PretrainSet.from_images(clean), p, tmp_path / "s", 1, "cpu", log=logs.append,
                     cache=cache)
    pretrain_encoder("uncached", lambda: PretrainSet.from_images(clean), p, tmp_path / "u", 0, "cpu", log=logs.append)
    pretrain_encoder("hooked", lambda: PretrainSet.from_images(clean), p, tmp_path / "h", 0, "cpu", log=logs.append,
                     cache=cache, pair_filter=None, view_policy=_policy())
    assert trained == ["pretrain one_more", "pretrain seed", "pretrain uncached", "pretrain hooked"]
    assert not (tmp_path / "h" / EC.KEY_FILE).exists()


def _policy():
    from poisonedencoder.defenses import build_defense

    return build_defense({"name": "overlapping_views"}).view_policy()


def test_an_unfinished_encoder_in_the_folder_is_replaced_whole(tmp_path):
    p, clean, cache = _pretrain(), _images(), tmp_path / "cache"
    pretrain_encoder("a", lambda: PretrainSet.from_images(clean), p, tmp_path / "a", 0, "cpu", log=lambda _: None,
                     cache=cache)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"an interrupted training")
    pretrain_encoder("b", lambda: PretrainSet.from_images(clean), p, run, 0, "cpu", log=lambda _: None, cache=cache)
    assert (run / "checkpoint.pt").read_bytes() == (tmp_path / "a" / "checkpoint.pt").read_bytes()
    assert not list(tmp_path.glob(".*.tmp")) and not list((cache / "pretrained").glob(".*.tmp"))


@pytest.mark.parametrize("shape", ["paper", "square"])
def test_in_a_run_aspect_ratio_reuses_the_encoder_its_filter_leaves_equal(tmp_path, shape):
    """The paper's side-by-side poisoning inputs are all removed by ``aspect_ratio`` (and no digit):
    the run's poisoned encoder is the seed's clean encoder. Square ones are all kept: the poisoned
    encoder is that of the same attack without a defense."""
    from poisonedencoder.experiment.pipeline import Experiment

    base = {"pretrain_data": {"dataset": "digits", "num_images": 200}, "cache_dir": str(tmp_path / "cache"),
            "tasks": [{"dataset": "digits", "num_targets": 2}],
            "attack": {"poisoning_rate": 0.05, "num_references": 5, "poisonedencoder": {"shape": shape}},
            "pretrain": {"width": 4, "image_size": 16, "epochs": 1, "batch_size": 64, "threads": 1}}
    undefended = Experiment(C.resolve(base), tmp_path / "none", log=lambda _: None)
    undefended.pretrain("clean")
    undefended.pretrain("poisoned")
    logs = []
    run = Experiment(C.resolve(base, ["defense.name=aspect_ratio"]), tmp_path / "ar", log=logs.append)
    run.pretrain("poisoned")
    report = json.loads((tmp_path / "ar" / "defense.json").read_text())
    same_as = next((tmp_path / "cache" / "encoders").glob("*/encoder.pt")) if shape == "paper" \
        else tmp_path / "none" / "encoders" / "poisoned" / "encoder.pt"
    assert (report["recall"], report["precision"]) == (1.0, 1.0) if shape == "paper" else report["removed"] == 0
    assert (tmp_path / "ar" / "encoders" / "poisoned" / EC.REUSED_FILE).exists()
    assert (tmp_path / "ar" / "encoders" / "poisoned" / "encoder.pt").read_bytes() == same_as.read_bytes()
