"""Experiment configuration: presets, YAML files, ``--set key=value`` overrides, validation.

A config is a nested dict. Its schema is :data:`DEFAULTS`: a key that is not there is
an error, so a typo never silently runs the default. Presets (``paper``, ``cpu``,
``demo``) fill in pre-training and downstream settings; the user's file and the
command line override them, in that order.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError, check_number

DEFAULTS: dict[str, Any] = {
    "preset": "cpu",
    "seed": 0,
    "seeds": None,            # [0, 1, 2]: one run per seed (OUT/seed_<s>/) and a pooled result; overrides seed
    "data_root": None,        # where torchvision datasets live (default ~/.cache/poisonedencoder/data)
    "cache_dir": None,        # decoded datasets and shared clean encoders (default ~/.cache/poisonedencoder)
    "device": "cpu",
    "pretrain_data": {
        "dataset": "digits",
        "num_images": None,   # clean pre-training inputs drawn from the train split (None = all)
    },
    "tasks": [],              # list of target downstream tasks, see TASK_DEFAULTS
    "attack": {
        "name": "poisonedencoder",  # poisonedencoder | icp | witches_brew | duplication (their own settings: attack.<name>)
        "poisoning_rate": 0.03,     # poisoning inputs / clean pre-training inputs, all targets together
        "num_references": 10,       # reference inputs per target class
        "reference_selection": "random",  # random | typical (closest to the class mean in the clean encoder's feature space)
        "layout": "random",         # random | left-right | top-bottom
        "order": "random",          # random | target-first | reference-first
        "gap": 0,                   # pixels of gray between target and reference
    },
    "pretrain": {
        "algorithm": "simclr",      # simclr | mocov2 | byol | simsiam (their own settings: below)
        "backbone": "cnn7",         # cnn7 | resnet18
        "width": 32,                # cnn7 base width
        "image_size": 32,
        "epochs": 40,
        "batch_size": 256,
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 1e-6,
        "temperature": 0.5,
        "projection_dim": 128,
        "projector": "mlp",         # mlp (SimCLR's head) | linear | none
        "crop_scale": [0.08, 1.0],
        "flip_p": 0.5,
        "jitter": [0.4, 0.4, 0.4, 0.1],
        "jitter_p": 0.8,
        "gray_p": 0.2,
        "augmentation": "batched",  # batched (per-image parameters, tensor ops) | per_sample (torchvision per-sample PIL pipeline; slower)
        "precision": "auto",        # auto (bf16 where the hardware has it natively, else fp32) | bf16 (autocast for the forward pass; the loss stays fp32) | fp32
        "view_overlap": 0.0,        # defense: the views' crops share at least this fraction of the smaller one
        "drop_disagreeing": 0.0,    # defense (simclr): leave out this fraction of positive pairs that agree least
        "compile": False,           # torch.compile the training step (needs a C++ compiler on CPU)
        "threads": None,            # torch CPU threads (None = torch default)
        "snapshot_every": 0,        # keep the poisoned backbone every k epochs; evaluate reports ASR over training
        "checkpoint_every": 1,      # write the resumable checkpoint every k epochs (and after the last)
    },
    "defense": {
        "name": "none",             # none | part_hash | large_crops | overlapping_views | drop_disagreeing | finetune
    },
    "downstream": {
        "classifier": "mlp",        # mlp (feature-256-classes) | linear | knn (weighted vote, cosine; nothing trained)
        "knn_k": 200,               # knn: neighbours that vote
        "knn_temperature": 0.07,    # knn: vote weight exp(cosine / temperature)
        "epochs": 100,
        "lr": 1e-3,
        "batch_size": 256,
        "num_train": None,          # downstream training inputs per task (None = whole train split)
    },
}

def _add_method_sections() -> None:
    """Each pre-training method and each attack with settings of its own gets a section:
    ``pretrain.<name>``, ``attack.<name>``."""
    from .attack import ATTACKS
    from .ssl.methods import METHODS

    for name, method in METHODS.items():
        if method.defaults:
            DEFAULTS["pretrain"][name] = dict(method.defaults)
    for name, attack in ATTACKS.items():
        if attack.defaults:
            DEFAULTS["attack"][name] = dict(attack.defaults)
    from .defenses import DEFENSES

    for name, defense in DEFENSES.items():
        if defense.defaults:
            DEFAULTS["defense"][name] = dict(defense.defaults)


_add_method_sections()

TASK_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "num_targets": 5,           # random target inputs from the test split
    "targets": None,            # or explicit: [{index: 12, target_class: 3}, ...] (index into the test split)
}

# The type of each key whose default is null ("not set"); every other key has its default's type.
# (A task's keys are named tasks[].<key>.)
NULLABLE: dict[str, str] = {
    "seeds": "list",
    "data_root": "path",
    "cache_dir": "path",
    "pretrain_data.num_images": "integer",
    "pretrain.threads": "integer",
    "downstream.num_train": "integer",
    "tasks[].targets": "list",
}

PRESETS: dict[str, dict[str, Any]] = {
    # After the authors' code: CIFAR ResNet18, 1000 epochs. For GPUs.
    "paper": {
        "pretrain": {"backbone": "resnet18", "epochs": 1000, "batch_size": 256, "lr": 1e-3,
                     "weight_decay": 1e-6, "temperature": 0.5, "image_size": 32},
        "downstream": {"classifier": "mlp", "epochs": 500},
    },
    # Designed for 2 CPU cores: the full CIFAR-10 attack in minutes (see docs/RESULTS.md).
    "cpu": {
        "pretrain_data": {"num_images": 5000},
        "pretrain": {"backbone": "cnn7", "width": 16, "epochs": 100, "batch_size": 256, "image_size": 32},
        "downstream": {"classifier": "mlp", "epochs": 100, "num_train": 10000},
    },
    # One GPU (H100/H200): CIFAR ResNet18, bf16, 5,000 clean pre-training inputs (the `cpu` preset's
    # data), 200 epochs at batch 512: about 5 minutes per seed on one H200, clean and poisoned
    # pre-training and evaluation (measured; docs/DESIGN.md, "The gpu preset").
    "gpu": {
        "device": "cuda",
        "pretrain_data": {"num_images": 5000},
        "pretrain": {"backbone": "resnet18", "epochs": 200, "batch_size": 512, "image_size": 32, "lr": 1e-3,
                     "precision": "bf16", "checkpoint_every": 25, "snapshot_every": 50},
        "downstream": {"classifier": "mlp", "epochs": 100, "num_train": None},
    },
    # Digits, 2-5 minutes on 2 cores (README). A tiny pre-training set, so a high rate: 135 poisoning
    # inputs per target input (see docs/RESULTS.md for what the attack needs).
    "demo": {
        "pretrain_data": {"dataset": "digits", "num_images": None},
        "tasks": [{"dataset": "digits", "num_targets": 3}],
        "pretrain": {"backbone": "cnn7", "width": 16, "epochs": 150, "batch_size": 128, "image_size": 16,
                     "crop_scale": [0.4, 1.0], "flip_p": 0.0},
        "attack": {"poisoning_rate": 0.3, "num_references": 100},
        "downstream": {"classifier": "mlp", "epochs": 150},
    },
}


def _merge(base: dict, over: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        key = f"{path}{k}"
        if k not in base:
            raise UserError(f"unknown config key '{key}'")
        if isinstance(base[k], dict) and base[k] is not None:
            if not isinstance(v, dict):
                raise UserError(f"config key '{key}' must be a mapping")
            out[k] = _merge(base[k], v, key + ".")
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str) -> dict:
    """``pretrain.epochs=10`` -> ``{"pretrain": {"epochs": 10}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value != "" else None
    except yaml.YAMLError:
        parsed = value
    out: dict = {}
    cur = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = parsed
    return out


def load_yaml(path: str | Path) -> dict:
    """The file's mapping, its relative paths made absolute against the file's folder
    (see :func:`absolute_paths`), so that a config means the same from any working directory."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read config file {p}: {e.strerror if isinstance(e, OSError) else e}") from e
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping at top level")
    return absolute_paths(data, p.parent)


def _absolute(path: str, base: Path) -> str:
    q = Path(path).expanduser()
    return q.as_posix() if q.is_absolute() else os.path.abspath(base / q)


def absolute_paths(cfg: dict, base: str | Path) -> dict:
    """A copy of (part of) a config with its relative paths (``data_root``, ``cache_dir``, the
    ``PATH`` of ``imagefolder:PATH`` datasets) made absolute against ``base``: a config file's
    folder, or the working directory for the command line. Values of the wrong type are left for
    :func:`validate` to report."""
    out, base = copy.deepcopy(cfg), Path(base).absolute()

    def dataset(section: Any) -> None:
        if isinstance(section, dict) and isinstance(section.get("dataset"), str) and section["dataset"].startswith("imagefolder:"):
            section["dataset"] = "imagefolder:" + _absolute(section["dataset"].split(":", 1)[1], base)

    for key in ("data_root", "cache_dir"):
        if isinstance(out.get(key), str) and out[key]:
            out[key] = _absolute(out[key], base)
    dataset(out.get("pretrain_data"))
    if isinstance(out.get("tasks"), list):
        for t in out["tasks"]:
            dataset(t)
    return out


def resolve(user: dict | None = None, overrides: list[str] | tuple = ()) -> dict:
    """Defaults <- preset <- user config <- overrides, then validate."""
    user = dict(user or {})
    over: dict = {}
    for o in overrides:
        over = _deep_update(over, parse_override(o))
    over = absolute_paths(over, Path.cwd())  # paths on the command line: relative to the working directory
    preset = over.get("preset", user.get("preset", DEFAULTS["preset"]))
    if not isinstance(preset, str) or preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    cfg = _merge(DEFAULTS, PRESETS[preset])
    cfg = _merge(cfg, user)
    cfg = _merge(cfg, over)
    cfg["preset"] = preset
    if cfg["tasks"] is not None and not isinstance(cfg["tasks"], list):
        raise UserError(f"tasks must be a list of mappings (each with a 'dataset' key), got {cfg['tasks']!r}")
    cfg["tasks"] = [_merge(TASK_DEFAULTS, t, f"tasks[{i}].") if isinstance(t, dict) else _bad_task(i)
                    for i, t in enumerate(cfg["tasks"] or [])]
    if not cfg["tasks"]:
        cfg["tasks"] = [_merge(TASK_DEFAULTS, {"dataset": cfg["pretrain_data"]["dataset"]})]
    validate(cfg)
    return cfg


def _bad_task(i: int):
    raise UserError(f"tasks[{i}] must be a mapping with a 'dataset' key")


def _deep_update(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out


def _number(cfg: dict, section: str, key: str, lo: float, hi: float, integer: bool = False,
            lo_open: bool = False) -> None:
    check_number(cfg[section][key] if section else cfg[key], f"{section}.{key}" if section else key, lo, hi,
                 integer, lo_open)


_WANT = {"boolean": "true or false", "integer": "an integer", "number": "a number", "text": "text",
         "path": "a path (text)", "list": "a list", "mapping": "a mapping"}


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return "text"
    if isinstance(default, (list, tuple)):
        return "list"
    if isinstance(default, dict):
        return "mapping"
    raise TypeError(f"no config type for default {default!r}")  # pragma: no cover (a schema bug, not user input)


def _is(v: Any, kind: str) -> bool:
    if kind == "boolean":
        return isinstance(v, bool)
    if kind == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind in ("text", "path"):
        return isinstance(v, str)
    return isinstance(v, list if kind == "list" else dict)


def _type_error(key: str, v: Any, want: str) -> UserError:
    hint = ""
    if want in ("a number", "a list of numbers") and isinstance(v, str):
        try:
            hint = f" (YAML reads {v} as text; write {float(v)!r})" if "e" in v.lower() else ""
        except ValueError:
            pass
    return UserError(f"{key} must be {want}, got {v!r}{hint}")


def _check_types(values: dict, defaults: dict, prefix: str, schema_prefix: str) -> None:
    for k, default in defaults.items():
        if k not in values:
            continue
        v, key, skey = values[k], prefix + k, schema_prefix + k
        kind = _kind(default) if default is not None else NULLABLE.get(skey)
        if kind is None or (v is None and default is None):  # null where null means "not set"
            continue
        if not _is(v, kind):
            raise _type_error(key, v, _WANT[kind])
        if kind == "mapping":
            _check_types(v, default, key + ".", skey + ".")
        elif kind == "list" and default and all(_is(x, "number") for x in default):  # crop_scale, jitter
            if not all(_is(x, "number") for x in v):
                raise _type_error(key, v, "a list of numbers")


def check_types(cfg: dict) -> None:
    """Every key has its default's type (or :data:`NULLABLE`'s, where the default is null).
    Runs before any other check, so that no check or plugin ever compares a string with a number."""
    _check_types(cfg, DEFAULTS, "", "")
    for i, t in enumerate(cfg["tasks"]):
        _check_types(t, TASK_DEFAULTS, f"tasks[{i}].", "tasks[].")


def validate(cfg: dict) -> None:
    from .data.datasets import TORCHVISION
    from .ssl.models import BACKBONES

    check_types(cfg)  # first: every later check may rely on the types

    def check_dataset(name: Any, where: str) -> None:
        if not isinstance(name, str) or not (name == "digits" or name in TORCHVISION or name.startswith("imagefolder:")):
            raise UserError(f"{where}: unknown dataset {name!r}; choose digits, {', '.join(TORCHVISION)} or imagefolder:PATH")

    check_dataset(cfg["pretrain_data"]["dataset"], "pretrain_data.dataset")
    n = cfg["pretrain_data"]["num_images"]
    if n is not None:
        _number(cfg, "pretrain_data", "num_images", 1, 10**9, integer=True)
    a = cfg["attack"]
    from .attack import ATTACKS, build_attack

    _number(cfg, "attack", "poisoning_rate", 0, 1, lo_open=True)
    _number(cfg, "attack", "num_references", 1, 10**6, integer=True)
    _number(cfg, "attack", "gap", 0, 4096, integer=True)
    for key, choices in (("layout", ("random", "left-right", "top-bottom")),
                         ("order", ("random", "target-first", "reference-first")),
                         ("reference_selection", ("random", "typical"))):
        if a[key] not in choices:
            raise UserError(f"attack.{key} must be one of {', '.join(choices)}, got {a[key]!r}")
    build_attack(a)  # then the attack checks its own settings
    for name, attack in ATTACKS.items():  # and the other attacks' sections, so a typo never waits
        if attack.defaults and name != a["name"]:
            build_attack({**a, "name": name})
    p = cfg["pretrain"]
    from .ssl.methods import METHODS

    if p["algorithm"] not in METHODS:
        raise UserError(f"pretrain.algorithm: unknown algorithm {p['algorithm']!r}; choose one of {', '.join(METHODS)}")
    for name, method in METHODS.items():
        for key, default in method.defaults.items():
            v = p[name][key]
            if isinstance(default, int) and not isinstance(default, bool):
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise UserError(f"pretrain.{name}.{key} must be a positive integer, got {v!r}")
            elif not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= (1 if key in ("momentum", "ema_base") else 100):
                raise UserError(f"pretrain.{name}.{key} must be a number in (0, {1 if key in ('momentum', 'ema_base') else 100}], got {v!r}")
    if p["backbone"] not in BACKBONES:
        raise UserError(f"pretrain.backbone: unknown backbone {p['backbone']!r}; choose one of {', '.join(BACKBONES)}")
    if p["projector"] not in ("mlp", "linear", "none"):
        raise UserError(f"pretrain.projector must be mlp, linear or none, got {p['projector']!r}")
    if p["precision"] not in ("auto", "bf16", "fp32"):
        raise UserError(f"pretrain.precision must be auto, bf16 or fp32, got {p['precision']!r}")
    if p["augmentation"] not in ("batched", "per_sample"):
        hint = " (renamed per_sample)" if p["augmentation"] == "reference" else ""
        raise UserError(f"pretrain.augmentation must be batched or per_sample, got {p['augmentation']!r}{hint}")
    _number(cfg, "pretrain", "view_overlap", 0, 1)
    _number(cfg, "pretrain", "drop_disagreeing", 0, 0.99)
    if not isinstance(p["compile"], bool):
        raise UserError(f"pretrain.compile must be true or false, got {p['compile']!r}")
    if p["optimizer"] not in ("adam", "sgd"):
        raise UserError(f"pretrain.optimizer must be adam or sgd, got {p['optimizer']!r}")
    for key, lo, hi, integer in (("snapshot_every", 0, 100000, True), ("checkpoint_every", 1, 100000, True), ("width", 1, 4096, True), ("image_size", 8, 1024, True), ("epochs", 0, 100000, True),
                                 ("batch_size", 2, 1 << 20, True), ("lr", 0, 100, False), ("weight_decay", 0, 1, False),
                                 ("temperature", 1e-6, 100, False), ("projection_dim", 1, 65536, True),
                                 ("flip_p", 0, 1, False), ("jitter_p", 0, 1, False), ("gray_p", 0, 1, False)):
        _number(cfg, "pretrain", key, lo, hi, integer)
    cs = p["crop_scale"]
    if not (isinstance(cs, (list, tuple)) and len(cs) == 2 and 0 < cs[0] <= cs[1] <= 1):
        raise UserError(f"pretrain.crop_scale must be [min, max] with 0 < min <= max <= 1, got {cs!r}")
    j = p["jitter"]
    if not (isinstance(j, (list, tuple)) and len(j) == 4 and all(isinstance(x, (int, float)) and x >= 0 for x in j) and j[3] <= 0.5):
        raise UserError(f"pretrain.jitter must be [brightness, contrast, saturation, hue] >= 0 with hue <= 0.5, got {j!r}")
    from .defenses import DEFENSES, build_defense

    chosen = build_defense(cfg["defense"])
    for name, defense in DEFENSES.items():
        if defense.defaults and name != cfg["defense"]["name"]:
            build_defense({**cfg["defense"], "name": name})
    effective = chosen.adjust_pretrain(dict(p))  # what the poisoned encoder trains with
    if effective["augmentation"] == "per_sample" and effective["view_overlap"]:  # set directly or by the defense
        raise UserError("view_overlap (defense overlapping_views) needs pretrain.augmentation batched: "
                        "per_sample draws the two views independently")
    if effective["drop_disagreeing"] and effective["algorithm"] != "simclr":  # set directly or by the defense
        raise UserError(f"drop_disagreeing works with pretrain.algorithm simclr only, got {effective['algorithm']!r}")
    d = cfg["downstream"]
    if d["classifier"] not in ("mlp", "linear", "knn"):
        raise UserError(f"downstream.classifier must be mlp, linear or knn, got {d['classifier']!r}")
    _number(cfg, "downstream", "knn_k", 1, 10**6, integer=True)
    _number(cfg, "downstream", "knn_temperature", 0, 100, lo_open=True)
    _number(cfg, "downstream", "epochs", 1, 100000, integer=True)
    _number(cfg, "downstream", "lr", 0, 100, lo_open=True)
    _number(cfg, "downstream", "batch_size", 1, 1 << 20, integer=True)
    if d["num_train"] is not None:
        _number(cfg, "downstream", "num_train", 1, 10**9, integer=True)
    if cfg["device"] != "cpu" and not str(cfg["device"]).startswith("cuda"):
        raise UserError(f"device must be cpu or cuda[:N], got {cfg['device']!r}")
    _number(cfg, "", "seed", 0, 2**31 - 1, integer=True)
    _check_seeds(cfg["seeds"])
    for i, t in enumerate(cfg["tasks"]):
        check_dataset(t["dataset"], f"tasks[{i}].dataset")
        if t["targets"] is None:
            if not isinstance(t["num_targets"], int) or isinstance(t["num_targets"], bool) or t["num_targets"] < 1:
                raise UserError(f"tasks[{i}].num_targets must be a positive integer, got {t['num_targets']!r}")
        elif not isinstance(t["targets"], list) or not all(
                isinstance(x, dict) and set(x) == {"index", "target_class"} and _is(x["index"], "integer")
                and (_is(x["target_class"], "integer") or isinstance(x["target_class"], str)) for x in t["targets"]):
            raise UserError(f"tasks[{i}].targets must be a list of {{index: integer, target_class: integer or name}} "
                            f"mappings, got {t['targets']!r}")


def _check_seeds(seeds: Any) -> None:
    """``seeds``: absent (``None``) or a non-empty list of distinct integers in [0, 2^31)."""
    if seeds is None:
        return
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**31 for x in seeds)):
        raise UserError(f"seeds must be a non-empty list of integers in [0, 2^31), e.g. [0, 1, 2], got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds must not repeat a seed, got {seeds!r}")


def fingerprint(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
