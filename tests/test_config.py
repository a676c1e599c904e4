import re
import subprocess
import sys
from pathlib import Path

import pytest

from poisonedencoder import config as C
from poisonedencoder.core.errors import UserError
from poisonedencoder.ssl.settings import PretrainSettings

ROOT = Path(__file__).resolve().parents[1]


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


# ---------------------------------------------------------------- every key, every wrong type
_WRONG = {  # by the default's type: values of other types
    bool: ["abc", 1, 1.5, [1], {"x": 1}, None],
    int: ["abc", 1.5, True, [1], {"x": 1}, None],
    float: ["abc", "1e-3", True, [1], {"x": 1}, None],
    str: [1, 1.5, True, [1], {"x": 1}, None],
    list: ["abc", 1, {"x": 1}, None],
    dict: ["abc", 1, [1], None],
}
_WRONG_AUTO_OR_BOOL = ["abc", 1, 1.5, [1], {"x": 1}, None]  # auto, true or false (pretrain.compile)
_AUTO_OR_BOOL = {f"pretrain.{k}" for k in PretrainSettings.model_fields if PretrainSettings.kind(k) == "auto or boolean"}
_WRONG_NULLABLE = {  # keys whose default is null: null is allowed, other types are not
    "path": [1, 1.5, True, [1], {"x": 1}],
    "integer": ["abc", 1.5, True, [1], {"x": 1}],
    "list": ["abc", 1, {"x": 1}],
    "number": ["abc", "1e-3", True, [1], {"x": 1}],
}


def _schema_keys(defaults: dict, prefix: str = ""):
    for k, v in defaults.items():
        yield prefix + k, v
        if isinstance(v, dict):
            yield from _schema_keys(v, prefix + k + ".")


def _nested(key: str, value) -> dict:
    out: dict = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def _wrong_cases():
    cases = []
    for key, default in _schema_keys(C.defaults()):
        if default is None:
            wrong = _WRONG_NULLABLE[C.NULLABLE[key]]
        else:
            wrong = list(_WRONG_AUTO_OR_BOOL if key in _AUTO_OR_BOOL else _WRONG[type(default)])
            if key == "tasks":
                wrong.remove(None)  # tasks: null is the default task, like an empty list
            if isinstance(default, list) and default:
                wrong.append(["a"] * len(default))  # a list, of the wrong element type
        cases += [(key, _nested(key, v)) for v in wrong]
    for key, default in TASK_KEYS.items():
        wrong = _WRONG_NULLABLE[C.NULLABLE[f"tasks[].{key}"]] if default is None else _WRONG[type(default)]
        cases += [(f"tasks[0].{key}", {"tasks": [{"dataset": "digits", key: v}]}) for v in wrong]
        if key == "targets":
            cases += [(f"tasks[0].{key}", {"tasks": [{"dataset": "digits", key: [v]}]})
                      for v in (1, "abc", {"index": "a", "target_class": 1}, {"index": 0, "target_class": [1]})]
    return cases


TASK_KEYS = dict(C.TASK_DEFAULTS)


def test_every_null_default_declares_its_type():
    nulls = [k for k, v in _schema_keys(C.defaults()) if v is None] + \
        [f"tasks[].{k}" for k, v in C.TASK_DEFAULTS.items() if v is None]
    assert sorted(nulls) == sorted(C.NULLABLE)


def test_the_walk_covers_the_plugin_sections():
    keys = {k for k, _ in _wrong_cases()}
    for k in ("attack.poisoning_rate", "attack.witches_brew.steps", "attack.icp.mode", "pretrain.mocov2.queue_size",
              "pretrain.byol.ema_base", "pretrain.simsiam", "defense.part_hash.min_std", "defense.finetune.num_clean",
              "defense.crop_disagreement.fpr",
              "pretrain_data.num_images", "downstream.num_train", "tasks[0].targets", "tasks[0].num_targets", "tasks"):
        assert k in keys


def test_every_key_given_a_wrong_type_is_a_one_line_user_error():
    cases = _wrong_cases()
    assert len(cases) > 300
    for key, user in cases:
        with pytest.raises(UserError) as e:
            C.resolve(user)
        msg = str(e.value)
        assert "\n" not in msg, (key, msg)
        assert key.split(".")[-1].split("[")[0] in msg, (key, user, msg)  # names the key


@pytest.mark.parametrize("override,match", [
    ("attack.poisoning_rate=abc", "attack.poisoning_rate must be a number, got 'abc'"),
    ("pretrain.lr=1e-3", "write 0.001"),
    ("pretrain.crop_scale=5", "pretrain.crop_scale must be a list"),
    ("pretrain.jitter=[a, b, c, d]", "pretrain.jitter must be a list of numbers"),
    ("defense.part_hash.min_std=abc", "defense.part_hash.min_std must be a number"),
    ("pretrain.compile=1", "pretrain.compile must be auto, true or false, got 1"),
    ("preset=[cpu]", "unknown preset"),
    ("tasks=5", "tasks must be a list"),
    ("attack.witches_brew.steps=1.5", "attack.witches_brew.steps must be an integer"),
])
def test_wrong_types_on_the_command_line(override, match):
    with pytest.raises(UserError, match=re.escape(match)):
        C.resolve({}, [override])


def test_cli_wrong_type_is_one_line_and_exit_2(tmp_path):
    r = _cli("craft", "--set", "attack.poisoning_rate=abc", str(ROOT / "configs" / "digits_demo.yaml"),
             "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"))
    assert r.returncode == 2, r.stderr
    assert r.stderr == "error: attack.poisoning_rate must be a number, got 'abc'\n"
    assert not (tmp_path / "run").exists()


def test_cli_path_flags_stay_text(tmp_path, monkeypatch):
    """--cache-dir 123 is a folder named 123, not the number 123."""
    from poisonedencoder.cli import _resolve, build_parser

    monkeypatch.chdir(tmp_path)
    cfg, _ = _resolve(build_parser().parse_args(["demo", "--cache-dir", "123", "--data-root", "a: b"]))
    assert cfg["cache_dir"] == str(tmp_path / "123") and cfg["data_root"] == str(tmp_path / "a: b")


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    f = tmp_path / "configs" / "c.yaml"
    f.write_text("cache_dir: ../cache\ndata_root: ~/dr\npretrain_data: {dataset: 'imagefolder:../data/cifar'}\n"
                 "tasks:\n  - {dataset: 'imagefolder:/abs/x'}\n  - {dataset: digits}\n")
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    cfg = C.resolve(C.load_yaml(f))
    assert cfg["cache_dir"] == str(tmp_path / "cache")
    assert cfg["data_root"] == str(Path("~/dr").expanduser())
    assert cfg["pretrain_data"]["dataset"] == f"imagefolder:{tmp_path / 'data' / 'cifar'}"
    assert [t["dataset"] for t in cfg["tasks"]] == ["imagefolder:/abs/x", "digits"]
    # on the command line: relative to the working directory
    cfg = C.resolve(C.load_yaml(f), ["pretrain_data.dataset=imagefolder:../d", "cache_dir=c"])
    assert cfg["pretrain_data"]["dataset"] == f"imagefolder:{tmp_path / 'somewhere' / 'd'}"
    assert cfg["cache_dir"] == str(elsewhere / "c")


def test_shipped_cpu_config_reads_cifar10_from_the_data_root_from_any_directory(tmp_path, monkeypatch):
    """No path of one machine's layout: the CIFAR-10 image folder is found under the data root."""
    from PIL import Image

    from poisonedencoder.data import load_dataset

    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / "data" / "cifar10" / split / c).mkdir(parents=True)
            Image.new("RGB", (32, 32), (9, 9, 9)).save(tmp_path / "data" / "cifar10" / split / c / "0.jpg")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = C.resolve(C.load_yaml(ROOT / "configs" / "cifar10_cpu.yaml"), [f"data_root={tmp_path / 'data'}"])
    assert cfg["pretrain_data"]["dataset"] == "cifar10-folder" and cfg["tasks"][0]["dataset"] == "cifar10-folder"
    ds = load_dataset(cfg["pretrain_data"]["dataset"], 8, cfg["data_root"], tmp_path / "cache", progress=False)
    assert ds.classes == ["cat", "dog"] and len(ds.train) == 2


def test_digits_works_config_is_three_percent_per_target_over_three_seeds(tmp_path):
    # the row docs/RESULTS.md reports for this file rests on these numbers
    from poisonedencoder.attack import poisons_per_target
    from poisonedencoder.data import load_dataset

    path = Path(__file__).resolve().parents[1] / "configs" / "digits_works.yaml"
    cfg = C.resolve(C.load_yaml(path), [])
    n_clean = len(load_dataset("digits", image_size=cfg["pretrain"]["image_size"], cache_dir=tmp_path).train.labels)
    per = poisons_per_target(cfg["attack"]["poisoning_rate"], n_clean, cfg["tasks"][0]["num_targets"])
    assert cfg["seeds"] == [0, 1, 2] and cfg["tasks"][0]["num_targets"] == 10
    assert per / n_clean <= 0.03 and cfg["attack"]["num_references"] >= per
    assert (cfg["pretrain"]["epochs"], cfg["pretrain"]["backbone"], cfg["pretrain"]["width"]) == (500, "cnn7", 16)
