"""The crop-disagreement filter: an input whose own crops an encoder maps apart (two objects side
by side) scores higher than one whose crops agree; the budget fixes how many are removed, or the
threshold for a stated false-positive rate (``fpr``) does; the report says which; it gets the
defender's clean encoder in the pipeline."""
import json

import numpy as np
import pytest
import torch

from poisonedencoder import config as C
from poisonedencoder.attack.poisonedencoder import compose, compose_square
from poisonedencoder.defenses import build_defense
from poisonedencoder.core.errors import UserError


class MeanColour(torch.nn.Module):
    """A hand-built encoder whose features are known: a crop's mean colour, centred on gray. Crops
    of one flat-coloured object agree (cosine near 1); a red crop and a green one do not."""

    def forward(self, x):
        return x.mean((2, 3)) - 0.5


def _detector(**settings):
    return build_defense({"name": "crop_disagreement", "crop_disagreement": settings})


def _inputs(toy_dataset, make=compose_square):
    """40 clean toy inputs (four flat class colours with noise) and 8 composites of two classes."""
    clean = list(toy_dataset.train.images)
    ims, labels = toy_dataset.test.images, toy_dataset.test.labels
    composites = [make(ims[i], ims[j], layout) for i, j, layout in
                  [(0, 1, "left-right"), (1, 2, "top-bottom"), (2, 3, "left-right"), (3, 4, "top-bottom"),
                   (4, 6, "left-right"), (5, 7, "2x2"), (6, 9, "top-bottom"), (7, 10, "left-right")]]
    assert all(labels[i] != labels[j] for i, j in [(0, 1), (1, 2), (2, 3), (3, 4), (4, 6), (5, 7), (6, 9), (7, 10)])
    return clean, composites


@pytest.mark.parametrize("make", [compose_square, compose], ids=["square", "paper"])
@pytest.mark.parametrize("statistic", ["mean", "min"])
def test_composites_of_two_objects_score_higher_than_single_inputs(toy_dataset, make, statistic):
    clean, composites = _inputs(toy_dataset, make)
    scores = _detector(statistic=statistic).scores(clean + composites, MeanColour())
    assert scores[len(clean):].min() > scores[:len(clean)].max()
    assert scores[:len(clean)].max() < 0.1  # one object: the crops agree


def test_the_budget_fixes_how_many_are_removed_and_the_top_scores_go(toy_dataset):
    clean, composites = _inputs(toy_dataset)
    images = clean + composites
    r = _detector(budget=8 / 48).filter(images, encoder=MeanColour())
    assert r.removed == r.verdicts.sum() == 8
    assert r.score(np.r_[np.zeros(40, bool), np.ones(8, bool)]) == {"flagged": 8, "precision": 1.0, "recall": 1.0}
    for budget, want in ((0.01, 0), (0.25, 12), (0.5, 24)):
        assert _detector(budget=budget).filter(images, encoder=MeanColour()).removed == want


def test_fpr_sets_a_threshold_that_removes_what_scores_above_it_not_a_share(toy_dataset):
    """A known case: 40 clean inputs and 8 composites. The default budget (0.05) removes 2 inputs,
    whatever the scores; ``fpr`` 0.05 removes every input above median + z(0.95) * 1.4826 * MAD:
    all 8 composites, far above the clean bulk, and the clean inputs in the toy scores' upper tail
    (heavier than normal: 8 of 40)."""
    from poisonedencoder.defenses.threshold import robust_threshold

    clean, composites = _inputs(toy_dataset)
    images, truth = clean + composites, np.r_[np.zeros(40, bool), np.ones(8, bool)]
    oracle = _detector().filter(images, encoder=MeanColour())
    r = _detector(fpr=0.05).filter(images, encoder=MeanColour())
    scores = _detector().scores(images, MeanColour())
    assert oracle.removed == 2 and r.removed == r.verdicts.sum() != oracle.removed
    assert r.verdicts[40:].all() and r.verdicts[:40].sum() == 8 and r.score(truth)["recall"] == 1.0
    assert (r.verdicts == (scores > robust_threshold(scores, 0.05))).all()
    assert r.removed == _detector(fpr=0.05, budget=0.5).filter(images, encoder=MeanColour()).removed  # budget unused
    assert _detector(fpr=0.4).filter(images, encoder=MeanColour()).removed > r.removed  # a laxer rate removes more


def test_fpr_on_normal_clean_scores_loses_about_that_share_of_them():
    """Scores of 2,000 clean inputs drawn from a normal distribution and 100 poisoning inputs far
    above them: ``fpr`` 0.05 removes every poisoning input and about 5% of the clean ones (a little
    fewer: the poisoning inputs raise the median and the MAD); the budget removes its share."""
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0.2, 0.02, 2000), np.full(100, 0.6)]
    v, rule = _detector(fpr=0.05).verdicts(scores)
    assert v[2000:].all() and 0.03 < v[:2000].mean() < 0.05 and rule["threshold_rule"] == "fpr"
    v, rule = _detector(budget=0.01).verdicts(scores)
    assert v.sum() == 21 and v[2000:].sum() == 21 and rule["threshold_rule"] == "budget (oracle)"


def test_the_report_says_which_rule_set_the_threshold(toy_dataset):
    clean, composites = _inputs(toy_dataset)
    truth = np.r_[np.zeros(40, bool), np.ones(8, bool)]
    d = _detector(fpr=0.05).filter(clean + composites, encoder=MeanColour()).to_dict(truth)
    assert d["threshold_rule"] == "fpr" and d["fpr"] == 0.05 and "budget" not in d
    assert d["removed"] == d["flagged"] >= 8 and isinstance(d["threshold"], float)
    o = _detector(budget=8 / 48).filter(clean + composites, encoder=MeanColour()).to_dict(truth)
    assert o["threshold_rule"] == "budget (oracle)" and o["budget"] == 8 / 48 and "fpr" not in o
    assert o["removed"] == 8 and o["threshold"] > d["threshold"]  # the lowest removed score: a composite's
    assert json.loads(json.dumps(d)) == d  # what defense.json holds


def test_a_config_without_fpr_keeps_its_fingerprint_and_one_with_it_does_not():
    """``fpr`` was added after the race's crop_disagreement runs were recorded: at null it stays out
    of the fingerprint (the recorded run of the budget's cell is still found); set, it enters."""
    from pathlib import Path

    import yaml

    from poisonedencoder.ssl import precision as P

    run = Path(__file__).resolve().parents[2] / "docs/results/claims/arms/race_paper_crop_disagreement/seed_0"
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert "fpr" not in recorded["defense"]["crop_disagreement"]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(P, "native_bf16", lambda _device: True)  # recorded with precision auto on native bf16
        want = (run / ".fingerprint").read_text().strip()
        assert C.experiment_fingerprint(C.resolve(recorded)) == want
        assert C.experiment_fingerprint(C.resolve(recorded, ["defense.crop_disagreement.fpr=null"])) == want
        assert C.experiment_fingerprint(C.resolve(recorded, ["defense.crop_disagreement.fpr=0.05"])) != want


def test_scores_are_reproducible_and_min_is_at_least_mean(toy_dataset):
    clean, composites = _inputs(toy_dataset)
    a = _detector().scores(clean + composites, MeanColour())
    assert (a == _detector().scores(clean + composites, MeanColour())).all()
    assert (_detector(statistic="min").scores(clean + composites, MeanColour()) >= a - 1e-6).all()


def test_crops_and_crop_scale_are_what_the_encoder_sees(toy_dataset):
    """``crops``: that many crops of every input reach the encoder; ``crop_scale`` [1, 1]: every crop
    is the whole input, so even a composite's crops agree and nothing scores above zero."""
    clean, composites = _inputs(toy_dataset)
    seen = []

    class Counting(MeanColour):
        def forward(self, x):
            seen.append(len(x))
            return super().forward(x)

    for k in (2, 5):
        seen.clear()
        _detector(crops=k).scores(clean + composites, Counting())
        assert sum(seen) == k * len(clean + composites)
    whole = _detector(crop_scale=[1.0, 1.0]).scores(clean + composites, MeanColour())
    assert np.abs(whole).max() < 1e-5
    assert _detector().scores(clean + composites, MeanColour())[len(clean):].min() > 0.01  # the default crops do not agree


def test_a_real_encoder_runs_and_leaves_its_mode_as_it_was(toy_dataset):
    from poisonedencoder.ssl.models import build_backbone

    torch.manual_seed(0)
    enc = build_backbone("cnn7", 4).train()
    clean, composites = _inputs(toy_dataset)
    r = _detector(crops=3).filter(clean + composites, encoder=enc)
    assert r.removed == round(0.05 * 48) and enc.training


def test_without_an_encoder_it_says_what_it_needs():
    with pytest.raises(UserError, match="needs an encoder"):
        _detector().filter([np.zeros((8, 8, 3), np.uint8)])


@pytest.mark.parametrize("setting, message", [
    ("budget=0", r"defense.crop_disagreement.budget must be in \(0, 1\]"),
    ("budget=1", "budget must be below 1"),
    ("budget=0.5x", "budget must be a number"),
    ("crops=1", r"defense.crop_disagreement.crops must be in \[2, 1024\]"),
    ("crops=2.5", "crops must be an integer"),
    ("crop_scale=[0.5, 0.2]", r"crop_scale must be \[min, max\] with 0 < min <= max <= 1"),
    ("crop_scale=[0, 1]", "crop_scale must be"),
    ("statistic=max", "statistic must be mean or min, got 'max'"),
    ("encoder=poisoned", "encoder must be clean or unfiltered, got 'poisoned'"),
    ("fpr=0", r"fpr must lie strictly between 0 and 1 \(a false-positive rate\) or be null, got 0$"),
    ("fpr=1", r"fpr must lie strictly between 0 and 1 .* got 1$"),
    ("fpr=-1", r"fpr must lie strictly between 0 and 1 .* got -1$"),
    ("fpr=x", r"^defense.crop_disagreement.fpr must be a number, got 'x'$"),
])
def test_settings_are_checked(setting, message):
    with pytest.raises(UserError, match=message) as e:
        C.resolve({}, ["defense.name=crop_disagreement", f"defense.crop_disagreement.{setting}"])
    assert "\n" not in str(e.value)  # one line


def test_it_filters_in_the_pipeline_with_the_clean_encoder(tmp_path):
    """From the CLI: the clean encoder is pre-trained first and handed to the filter; its verdicts
    are scored against the manifest in defense.json."""
    from poisonedencoder.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("pretrain_data: {dataset: digits, num_images: 400}\ntasks: [{dataset: digits, num_targets: 2}]\n"
                   "attack: {poisoning_rate: 0.05, num_references: 5, poisonedencoder: {shape: square}}\n"
                   "pretrain: {width: 4, image_size: 16, epochs: 1, batch_size: 64, threads: 1}\n"
                   "defense: {name: crop_disagreement, crop_disagreement: {budget: 0.1, crops: 4}}\n")
    out = tmp_path / "run"
    assert main(["pretrain", str(cfg), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    d = json.loads((out / "defense.json").read_text())
    assert d["name"] == "crop_disagreement" and d["removed"] == round(0.1 * 420) and 0 <= d["recall"] <= 1
    assert (tmp_path / "cache" / "encoders").is_dir()


@pytest.mark.parametrize("source", ["clean", "unfiltered"])
def test_the_encoder_setting_picks_which_encoder_scores(tmp_path, source):
    """``encoder: unfiltered`` pre-trains an encoder on the unfiltered data (clean and poisoning
    inputs) in the run's encoders/unfiltered/ and scores with it, and no clean encoder is trained
    for the filter; ``clean`` does the reverse."""
    from poisonedencoder.experiment.pipeline import Experiment

    cfg = C.resolve({"pretrain_data": {"dataset": "digits", "num_images": 300}, "cache_dir": str(tmp_path / "cache"),
                     "tasks": [{"dataset": "digits", "num_targets": 2}],
                     "attack": {"poisoning_rate": 0.05, "num_references": 5},
                     "pretrain": {"width": 4, "image_size": 16, "epochs": 1, "batch_size": 64, "threads": 1}},
                    ["defense.name=crop_disagreement", "defense.crop_disagreement.crops=3",
                     f"defense.crop_disagreement.encoder={source}"])
    exp = Experiment(cfg, tmp_path / "run", log=lambda _: None)
    exp.pretrain("poisoned")
    d = json.loads((tmp_path / "run" / "defense.json").read_text())
    assert d["encoder"] == source and d["removed"] == round(0.05 * (300 + 16))
    unfiltered = (tmp_path / "run" / "encoders" / "unfiltered" / "encoder.pt").exists()
    clean = any((tmp_path / "cache" / "encoders").glob("*/encoder.pt"))
    assert (unfiltered, clean) == ((True, False) if source == "unfiltered" else (False, True))
