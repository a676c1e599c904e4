import subprocess
import sys

import pytest

from poisonedencoder import config as C
from poisonedencoder.errors import UserError


def test_presets_and_overrides():
    cfg = C.resolve({"preset": "cpu"}, ["pretrain.epochs=3", "attack.poisoning_rate=0.01"])
    assert cfg["pretrain"]["epochs"] == 3 and cfg["attack"]["poisoning_rate"] == 0.01
    assert cfg["pretrain"]["backbone"] == "cnn7"
    paper = C.resolve({"preset": "paper"})
    p = paper["pretrain"]
    assert (p["backbone"], p["epochs"], p["batch_size"], p["lr"], p["weight_decay"], p["temperature"]) == \
        ("resnet18", 1000, 256, 1e-3, 1e-6, 0.5)
    assert p["crop_scale"] == [0.08, 1.0] and p["jitter"] == [0.4, 0.4, 0.4, 0.1] and p["gray_p"] == 0.2


@pytest.mark.parametrize("user,overrides,match", [
    ({"pretrain": {"epoch": 3}}, [], "unknown config key 'pretrain.epoch'"),
    ({"bogus": 1}, [], "unknown config key 'bogus'"),
    ({}, ["attack.poisoning_rate=0"], "poisoning_rate"),
    ({}, ["attack.poisoning_rate=1.5"], "poisoning_rate"),
    ({"preset": "gpu9000"}, [], "unknown preset"),
    ({"pretrain_data": {"dataset": "imagenet22k"}}, [], "unknown dataset"),
    ({"tasks": [{"dataset": "digits", "num_target": 2}]}, [], "tasks\\[0\\].num_target"),
    ({}, ["pretrain.backbone=vgg"], "unknown backbone"),
    ({}, ["pretrain.crop_scale=[0.5, 0.1]"], "crop_scale"),
    ({}, ["device=tpu"], "device"),
])
def test_bad_config_is_a_user_error(user, overrides, match):
    with pytest.raises(UserError, match=match):
        C.resolve(user, overrides)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "poisonedencoder", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_bad_input_gives_one_line_and_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: cpu\nattack:\n  poisoning_rat: 0.1\n")
    r = _cli("craft", str(cfg), "--out", str(tmp_path / "run"))
    assert r.returncode == 2
    assert r.stderr.strip() == "error: unknown config key 'attack.poisoning_rat'"
    r = _cli("craft", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    cfg.write_text("tasks:\n  - dataset: digits\n    targets: [{index: 0, target_class: 42}]\n")
    r = _cli("craft", str(cfg), "--out", str(tmp_path / "run2"), "--cache-dir", str(tmp_path / "cache"))
    assert r.returncode == 2 and "outside the 10 classes" in r.stderr and "Traceback" not in r.stderr
    r = _cli("demo", "--set", "pretrain.batch_size=100000", "--out", str(tmp_path / "run3"),
             "--cache-dir", str(tmp_path / "cache"))
    assert r.returncode == 2 and "batch_size" in r.stderr and "Traceback" not in r.stderr
