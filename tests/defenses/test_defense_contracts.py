"""The contract of every registered defense: it acts through the hook of its stage and reports
its cost (time, inputs removed, clean data used); a defense without its hook fails when defined."""
import numpy as np
import pytest

from poisonedencoder import config as C
from poisonedencoder.defenses import DEFENSES, Defense, DefenderData, DefenseReport
from poisonedencoder.ssl.pretrain import PretrainSet, pretrain

SMALL = {"finetune": {"num_clean": 16, "epochs": 1}}


def _pretrain_settings():
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(width=4, image_size=8, batch_size=16, epochs=1, threads=1, crop_scale=[0.08, 1.0])
    return p


def _tiny_encoder():
    import torch

    from poisonedencoder.ssl.models import build_backbone

    torch.manual_seed(0)
    return build_backbone("cnn7", 4)


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_every_defense_acts_at_its_stage_and_reports_its_cost(name, toy_dataset, tmp_path):
    d = DEFENSES[name](**SMALL.get(name, {}))
    p = _pretrain_settings()
    images = list(toy_dataset.train.images)
    if d.stage == "pre":  # a filter that needs an encoder gets one (the pipeline's: the clean encoder)
        report = d.filter(images, encoder=_tiny_encoder()) if d.needs_encoder else d.filter(images)
        assert isinstance(report, DefenseReport) and len(report.verdicts) == len(images)
        assert report.removed == int(report.verdicts.sum()) and report.seconds >= 0
        assert set(report.to_dict(np.zeros(len(images), bool))) >= {"seconds", "removed", "clean_data_used", "precision"}
    elif d.stage == "in":  # it changes pre-training, through its settings (the same keys) or the loop's hooks
        changed, hooks = d.adjust_pretrain(dict(p)), d.training_hooks()
        assert set(changed) == set(p) and set(hooks) <= {"view_policy", "pair_filter"}
        assert changed != p or (hooks and all(callable(h) for h in hooks.values()))
    elif d.stage == "post":
        pretrain(PretrainSet.from_images(toy_dataset.train.images[:20]), p, tmp_path / "enc", seed=0, log=lambda _: None)
        data = DefenderData(p, 0, "cpu", tmp_path, toy_dataset.train.images, np.arange(20, 40), log=lambda _: None)
        path, report = d.after_pretrain(tmp_path / "enc", data)
        assert path.exists() and path != tmp_path / "enc" / "encoder.pt"
        assert report.clean_data_used == SMALL[name]["num_clean"] and report.seconds > 0
        assert (tmp_path / "defense.json").exists()
    else:
        assert name == "none" and d.adjust_pretrain(dict(p)) == p and d.filter(images) is None
        assert d.training_hooks() == {}


def test_a_defense_without_the_hook_of_its_stage_fails_when_it_is_defined():
    with pytest.raises(TypeError, match="must implement filter"):
        class NoFilter(Defense):  # noqa: F841 (defining it is the test)
            name, stage = "nofilter", "pre"
    with pytest.raises(TypeError, match="must implement after_pretrain"):
        class NoHook(Defense):  # noqa: F841
            name, stage = "nohook", "post"
    with pytest.raises(TypeError, match=r"must implement adjust_pretrain\(\) or view_policy\(\) or pair_filter\(\)"):
        class NoInHook(Defense):  # noqa: F841
            name, stage = "noinhook", "in"
