"""Experiment configuration: presets, YAML files, ``--set key=value`` overrides, validation.

A config is a nested dict. Its schema is :func:`defaults` (:data:`CORE_DEFAULTS` plus the
plugins' own sections, from their registries): a key that is not there is an error, so a typo never silently runs the default. Presets (``paper``, ``cpu``,
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
from .errors import preview as _preview

CORE_DEFAULTS: dict[str, Any] = {
    "preset": "cpu",
    "seed": 0,
    "seeds": None,
    "data_root": None,
    "cache_dir": None,
    "device": "cpu",
    "pretrain_data": {
        "dataset": "digits",
        "num_images": None,
    },
    "tasks": [],
    "attack": {
        "name": "poisonedencoder",
        "poisoning_rate": 0.03,
        "num_references": 10,
        "reference_selection": "random",
    },
    "pretrain": {
        "algorithm": "simclr",
        "backbone": "cnn7",
        "width": 32,
        "image_size": 32,
        "epochs": 40,
        "batch_size": 256,
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 1e-6,
        "temperature": 0.5,
        "projection_dim": 128,
        "projector": "mlp",
        "crop_scale": [0.08, 1.0],
        "flip_p": 0.5,
        "jitter": [0.4, 0.4, 0.4, 0.1],
        "jitter_p": 0.8,
        "gray_p": 0.2,
        "augmentation": "batched",
        "precision": "auto",
        "compile": False,
        "threads": None,
        "snapshot_every": 0,
        "checkpoint_every": 1,
    },
    "defense": {
        "name": "none",
    },
    "downstream": {
        "classifier": "mlp",
        "knn_k": 200,
        "knn_temperature": 0.07,
        "epochs": 100,
        "lr": 1e-3,
        "batch_size": 256,
        "num_train": None,
    },
}
"""The toolkit's own keys. The plugins' sections (``attack.<name>``, ``pretrain.<name>``,
``defense.<name>``) come from their registries: :func:`defaults` is the whole schema."""

# What each key means: the comments of docs/CONFIG.md (scripts/gen_config_doc.py writes it from
# the schema). A plugin describes its own settings in its ``doc`` (same form, keys without the section).
DESCRIPTIONS: dict[str, str] = {
    "preset": "paper | cpu | gpu | demo",
    "seeds": "[0, 1, 2] (or --seeds 0,1,2): one run per seed in OUT/seed_<s>/, pooled result in OUT/",
    "data_root": "datasets are read from here (torchvision ones downloaded here); --data-root",
    "cache_dir": "decoded datasets and shared clean encoders (~/.cache/poisonedencoder)",
    "device": "cpu | cuda[:N]",
    "pretrain_data.dataset": "see \"Datasets\"",
    "pretrain_data.num_images": "clean pre-training inputs drawn from the train split (null = all)",
    "tasks": "target downstream tasks (default: one task on the pre-training dataset)",
    "tasks[].num_targets": "random target inputs from the test split, random target classes",
    "tasks[].targets": "or explicit: [{index: 12, target_class: 3}] (class index or name); optional\n"
                       "references: [train indices] of the target class (else drawn with the seed)",
    "attack.name": "{attacks} (DESIGN.md)",
    "attack.poisoning_rate": "poisoning inputs / clean pre-training inputs, all targets together",
    "attack.num_references": "reference inputs per target (from the task's train split)",
    "attack.reference_selection": "random | typical (closest to the class mean of a clean surrogate encoder; see DESIGN.md)",
    "pretrain.algorithm": "{methods}",
    "pretrain.backbone": "{backbones} (resnet18: CIFAR stem, the paper's widths; resnet18w: the same at pretrain.width)",
    "pretrain.width": "cnn7 base width; resnet18w first-stage channels (both: feature = 8 * width; resnet18 ignores it)",
    "pretrain.image_size": "every dataset is resized to this once, when decoded",
    "pretrain.optimizer": "adam | sgd",
    "pretrain.projector": "mlp (SimCLR's head) | linear | none",
    "pretrain.augmentation": "batched (per-image parameters, tensor ops, on the device) | per_sample\n"
                             "(torchvision's per-sample PIL pipeline, image by image; one process; not\n"
                             "with defense overlapping_views; slower; for checking the batched one, see BENCHMARKS.md)",
    "pretrain.precision": "auto | bf16 | fp32. bf16: autocast forward pass, fp32 loss. auto: bf16 on\n"
                          "CUDA with bf16 and on CPUs with avx512_bf16 or amx_bf16, else fp32; the\n"
                          "run log and encoder.pt say which. bf16 on a CPU without them warns: ~8x slower",
    "pretrain.compile": "torch.compile the training step (on CPU it needs a C++ compiler)",
    "pretrain.threads": "torch CPU threads",
    "pretrain.snapshot_every": "keep the poisoned backbone every k epochs: ASR over training",
    "pretrain.checkpoint_every": "write the resumable checkpoint every k epochs and after the last (a resumed run loses at most k-1)",
    "defense.name": "{defenses}",
    "downstream.classifier": "mlp (feature-256-classes) | linear | knn (weighted k-NN vote on cosine; epochs, lr, batch_size unused)",
    "downstream.knn_k": "knn: neighbours that vote",
    "downstream.knn_temperature": "knn: each neighbour's vote weight is exp(cosine / temperature)",
    "downstream.num_train": "downstream training inputs per task (null = the whole train split)",
}


def _registries() -> dict[str, dict]:
    """The plugin registries by config section (imported here, not when this module is imported)."""
    from .attack import ATTACKS
    from .defenses import DEFENSES
    from .ssl.methods import METHODS

    return {"attack": ATTACKS, "pretrain": METHODS, "defense": DEFENSES}


def defaults() -> dict[str, Any]:
    """The whole schema: :data:`CORE_DEFAULTS` plus one section per plugin with settings of its own
    (``attack.<name>``, ``pretrain.<name>``, ``defense.<name>``), from the registries."""
    out = copy.deepcopy(CORE_DEFAULTS)
    for section, registry in _registries().items():
        for name, plugin in registry.items():
            if plugin.defaults:
                out[section][name] = copy.deepcopy(dict(plugin.defaults))
    return out


def descriptions() -> dict[str, str]:
    """:data:`DESCRIPTIONS` plus the plugins' ``doc`` (``attack.icp.mode``: ...), choices filled in
    from the registries."""
    from .ssl.models import BACKBONES

    regs = _registries()
    names = {"{attacks}": regs["attack"], "{methods}": regs["pretrain"], "{defenses}": regs["defense"],
             "{backbones}": BACKBONES}
    out = {}
    for k, v in DESCRIPTIONS.items():
        for placeholder, registry in names.items():
            v = v.replace(placeholder, " | ".join(registry))
        out[k] = v
    for section, registry in regs.items():
        for name, plugin in registry.items():
            if plugin.defaults:
                out[f"{section}.{name}"] = plugin.doc.get("", f"used when {'algorithm' if section == 'pretrain' else 'name'}: {name}")
                out.update({f"{section}.{name}.{k}": v for k, v in plugin.doc.items() if k})
    return out


TASK_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "num_targets": 5,
    "targets": None,
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


MOVED_TO_DEFENSES: dict[str, tuple[str, str]] = {
    "view_overlap": ("overlapping_views", "min_overlap"),
    "drop_disagreeing": ("drop_disagreeing", "fraction"),
}
"""Former ``pretrain`` keys, now a defense's settings: key -> (defense, its setting). A config that
sets one gets an error naming the defense; the value 0 (off), which every run directory's
``config.yaml`` written before the move carries, is accepted and dropped, so those configs still
resolve to their runs."""


def _drop_moved_keys(section: Any, source: str) -> Any:
    """``section`` (a config's ``pretrain``) without :data:`MOVED_TO_DEFENSES` keys at 0;
    :class:`UserError` for one set to anything else."""
    if not isinstance(section, dict) or not set(section) & set(MOVED_TO_DEFENSES):
        return section
    out = dict(section)
    for key, (defense, setting) in MOVED_TO_DEFENSES.items():
        if key not in out:
            continue
        v = out.pop(key)
        if not (_is(v, "number") and v == 0):
            raise UserError(f"{source}pretrain.{key} is no longer a pretrain setting: use the defense, "
                            f"defense.name: {defense} with defense.{defense}.{setting}: {_preview(v, 40)}")
    return out


def _merge(base: dict, over: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        key = f"{path}{k}"
        if k not in base:
            raise UserError(f"unknown config key {_preview(key)}")
        if isinstance(base[k], dict) and base[k] is not None:
            if not isinstance(v, dict):
                raise UserError(f"config key {_preview(key)} must be a mapping")
            out[k] = _merge(base[k], v, key + ".")
        else:
            out[k] = copy.deepcopy(v)
    return out


MAX_CONFIG_BYTES = 1_000_000
"""A config file larger than this is refused before it is read (a real one is a few kB)."""
MAX_VALUE_CHARS = 65_536
"""A ``--set`` value (or ``sweep --values``) longer than this is refused before it is parsed."""
MAX_DEPTH = 64
"""Mappings and lists nested deeper than this are refused (the schema is 4 levels deep)."""


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first, second):
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only, no objects built from tags) that refuses a key repeated
    in one mapping: YAML would keep the last one and drop the first without a word."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor`` merges, it is not a key
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader refuses it below
                continue
            if first is not key_node.start_mark:
                raise _DuplicateKey(key, first, key_node.start_mark)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str) -> Any:
    """``text`` as YAML (:class:`_Loader`: safe, no repeated keys, at most :data:`MAX_DEPTH` levels).
    ``source`` names it in errors (``config file x.yaml``, ``--set pretrain``). Raises
    :class:`UserError` for a repeated key or too deep nesting, ``yaml.YAMLError`` for invalid YAML."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a SafeLoader)
    except _DuplicateKey as e:
        a, b = e.first, e.second
        where = (f"lines {a.line + 1} and {b.line + 1}" if a.line != b.line
                 else f"line {a.line + 1}, columns {a.column + 1} and {b.column + 1}")
        raise UserError(f"{source}: key {_preview(e.key, 80)} appears twice in one mapping ({where}); "
                        "YAML would silently drop the first: keep one") from None
    except RecursionError:
        raise UserError(f"{source} is nested too deeply (more than {MAX_DEPTH} levels)") from None
    if _depth(data) > MAX_DEPTH:
        raise UserError(f"{source} is nested too deeply (more than {MAX_DEPTH} levels)")
    return data


def _depth(v: Any) -> int:
    """How deeply mappings and lists nest in ``v`` (0 for a scalar); without recursion."""
    most, stack = 0, [(v, 0)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, dict):
            x = list(x.values())
        if isinstance(x, list):
            most = max(most, d + 1)
            if d + 1 <= MAX_DEPTH:  # deeper is refused anyway
                stack += [(y, d + 1) for y in x]
    return most


def parse_value(text: str, source: str) -> Any:
    """A value from the command line (``--set key=VALUE``, one of ``sweep --values``) as YAML;
    text that is not valid YAML stays text."""
    if len(text) > MAX_VALUE_CHARS:
        raise UserError(f"{source}: the value has {len(text)} characters, more than the {MAX_VALUE_CHARS} accepted "
                        f"(a config value is short; put large settings in a file)")
    if text == "":
        return None
    try:
        return parse_yaml(text, source)
    except yaml.YAMLError:
        return text


def parse_override(text: str) -> dict:
    """``pretrain.epochs=10`` -> ``{"pretrain": {"epochs": 10}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"override {_preview(text)} must look like key.sub=value")
    key, value = text.split("=", 1)
    parsed = parse_value(value, f"--set {_preview(key.strip(), 80)}")
    out: dict = {}
    cur = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = parsed
    return out


def load_yaml(path: str | Path) -> dict:
    """The file's mapping, its relative paths made absolute against the file's folder
    (see :func:`absolute_paths`), so that a config means the same from any working directory.
    Refused at once: a folder, a file over :data:`MAX_CONFIG_BYTES`, a repeated key, nesting
    deeper than :data:`MAX_DEPTH`."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"config file {p} is a folder, not a file")
    if not p.exists():
        raise UserError(f"config file {p} does not exist")
    if not p.is_file():
        raise UserError(f"config file {p} is not a regular file")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise UserError(f"config file {p} is larger than {MAX_CONFIG_BYTES // 1000} kB (a config is a few kB); "
                            "refused")
        data = parse_yaml(raw.decode("utf-8"), f"config file {p}") or {}
    except yaml.YAMLError as e:
        raise UserError(f"config file {p} is not valid YAML: {_preview(str(e).splitlines()[0], 300)}") from e
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
    preset = over.get("preset", user.get("preset", CORE_DEFAULTS["preset"]))
    if not isinstance(preset, str) or preset not in PRESETS:
        raise UserError(f"unknown preset {_preview(preset)}; choose one of: {', '.join(PRESETS)}")
    if "pretrain" in user:
        user["pretrain"] = _drop_moved_keys(user["pretrain"], "config: ")
    if "pretrain" in over:
        over["pretrain"] = _drop_moved_keys(over["pretrain"], "--set ")
    cfg = _merge(defaults(), PRESETS[preset])
    cfg = _merge(cfg, user)
    cfg = _merge(cfg, over)
    cfg["preset"] = preset
    if cfg["tasks"] is not None and not isinstance(cfg["tasks"], list):
        raise UserError(f"tasks must be a list of mappings (each with a 'dataset' key), got {_preview(cfg['tasks'])}")
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
            hint = f" (YAML reads {v} as text; write {float(v)!r})" if "e" in v.lower() and len(v) < 40 else ""
        except ValueError:
            pass
    return UserError(f"{key} must be {want}, got {_preview(v)}{hint}")


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


def check_types(cfg: dict, schema: dict | None = None) -> None:
    """Every key has its default's type (or :data:`NULLABLE`'s, where the default is null).
    Runs before any other check, so that no check or plugin ever compares a string with a number."""
    _check_types(cfg, schema if schema is not None else defaults(), "", "")
    for i, t in enumerate(cfg["tasks"]):
        _check_types(t, TASK_DEFAULTS, f"tasks[{i}].", "tasks[].")


def validate(cfg: dict) -> None:
    """Types first (every later check may rely on them), then the toolkit's own keys, then each
    plugin checks its own settings (the chosen one and, so that a typo never waits, the others)."""
    from .attack import ATTACKS, build_attack
    from .data import check_dataset
    from .defenses import DEFENSES, build_defense
    from .ssl.methods import METHODS
    from .ssl.models import BACKBONES
    from .ssl.pretrain import check_hooks

    check_types(cfg)
    check_dataset(cfg["pretrain_data"]["dataset"], "pretrain_data.dataset")
    if cfg["pretrain_data"]["num_images"] is not None:
        _number(cfg, "pretrain_data", "num_images", 1, 10**9, integer=True)
    a = cfg["attack"]
    build_attack(a)  # the budget and the reference inputs' settings, then the attack's own
    for name, attack in ATTACKS.items():
        if attack.defaults and name != a["name"]:
            build_attack({**a, "name": name})
    p = cfg["pretrain"]
    _choice(p, "pretrain", "algorithm", tuple(METHODS), registry=True)
    for name, method in METHODS.items():
        if method.defaults:
            method.check(p[name])
    _choice(p, "pretrain", "backbone", tuple(BACKBONES), registry=True)
    _choice(p, "pretrain", "projector", ("mlp", "linear", "none"))
    _choice(p, "pretrain", "precision", ("auto", "bf16", "fp32"))
    if p["augmentation"] == "reference":
        raise UserError("pretrain.augmentation must be batched or per_sample, got 'reference' (renamed per_sample)")
    _choice(p, "pretrain", "augmentation", ("batched", "per_sample"))
    _choice(p, "pretrain", "optimizer", ("adam", "sgd"))
    for key, lo, hi, integer in (("snapshot_every", 0, 100000, True), ("checkpoint_every", 1, 100000, True), ("width", 1, 4096, True), ("image_size", 8, 1024, True), ("epochs", 0, 100000, True),
                                 ("batch_size", 2, 1 << 20, True), ("lr", 0, 100, False), ("weight_decay", 0, 1, False),
                                 ("temperature", 1e-6, 100, False), ("projection_dim", 1, 65536, True),
                                 ("flip_p", 0, 1, False), ("jitter_p", 0, 1, False), ("gray_p", 0, 1, False)):
        _number(cfg, "pretrain", key, lo, hi, integer)
    cs = p["crop_scale"]
    if not (len(cs) == 2 and 0 < cs[0] <= cs[1] <= 1):
        raise UserError(f"pretrain.crop_scale must be [min, max] with 0 < min <= max <= 1, got {_preview(cs)}")
    j = p["jitter"]
    if not (len(j) == 4 and all(x >= 0 for x in j) and j[3] <= 0.5):
        raise UserError(f"pretrain.jitter must be [brightness, contrast, saturation, hue] >= 0 with hue <= 0.5, got {_preview(j)}")
    chosen = build_defense(cfg["defense"])
    for name, defense in DEFENSES.items():
        if defense.defaults and name != cfg["defense"]["name"]:
            build_defense({**cfg["defense"], "name": name})
    check_hooks(chosen.adjust_pretrain(dict(p)), **chosen.training_hooks())  # how the poisoned encoder trains
    d = cfg["downstream"]
    _choice(d, "downstream", "classifier", ("mlp", "linear", "knn"))
    _number(cfg, "downstream", "knn_k", 1, 10**6, integer=True)
    _number(cfg, "downstream", "knn_temperature", 0, 100, lo_open=True)
    _number(cfg, "downstream", "epochs", 1, 100000, integer=True)
    _number(cfg, "downstream", "lr", 0, 100, lo_open=True)
    _number(cfg, "downstream", "batch_size", 1, 1 << 20, integer=True)
    if d["num_train"] is not None:
        _number(cfg, "downstream", "num_train", 1, 10**9, integer=True)
    if cfg["device"] != "cpu" and not str(cfg["device"]).startswith("cuda"):
        raise UserError(f"device must be cpu or cuda[:N], got {_preview(cfg['device'])}")
    _number(cfg, "", "seed", 0, 2**31 - 1, integer=True)
    _check_seeds(cfg["seeds"])
    for i, t in enumerate(cfg["tasks"]):
        check_dataset(t["dataset"], f"tasks[{i}].dataset")
        if t["targets"] is None:
            if t["num_targets"] < 1:
                raise UserError(f"tasks[{i}].num_targets must be a positive integer, got {_preview(t['num_targets'])}")
        elif not all(isinstance(x, dict) and {"index", "target_class"} <= set(x) <= {"index", "target_class", "references"}
                     and _is(x["index"], "integer") and (_is(x["target_class"], "integer") or isinstance(x["target_class"], str))
                     and (isinstance(x.get("references", []), list) and x.get("references", [1]) != []
                          and all(_is(r, "integer") for r in x.get("references", [])))
                     for x in t["targets"]):
            raise UserError(f"tasks[{i}].targets must be a list of {{index: integer, target_class: integer or name, "
                            f"references (optional): [train indices]}} mappings, got {_preview(t['targets'])}")


def _choice(section: dict, name: str, key: str, choices: tuple, registry: bool = False) -> None:
    """``name.key`` is one of ``choices`` (``registry``: the names of a registry)."""
    if section[key] not in choices:
        if registry:
            raise UserError(f"{name}.{key}: unknown {key} {_preview(section[key])}; choose one of {', '.join(choices)}")
        raise UserError(f"{name}.{key} must be one of {', '.join(choices)}, got {_preview(section[key])}")


def _check_seeds(seeds: Any) -> None:
    """``seeds``: absent (``None``) or a non-empty list of distinct integers in [0, 2^31)."""
    if seeds is None:
        return
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**31 for x in seeds)):
        raise UserError(f"seeds must be a non-empty list of integers in [0, 2^31), e.g. [0, 1, 2], got {_preview(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds must not repeat a seed, got {_preview(seeds)}")


def fingerprint(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# settings that change where or how fast a run goes, not what it computes
_NOT_IN_FINGERPRINT = ("device", "data_root", "cache_dir", "seeds")  # seeds: the runner splits them into runs
_PRETRAIN_NOT_IN_FINGERPRINT = ("threads", "snapshot_every", "compile", "checkpoint_every")


def _chosen_section(section: dict, chosen: str, names) -> dict:
    """``section`` without the plugin sections of the plugins not chosen."""
    return {k: v for k, v in section.items() if not (k in names and k != chosen)}


def _without_added_later(settings: Any, plugin: Any) -> Any:
    """A plugin's settings without those it declares in ``added_later`` (a dict: setting -> the
    value that reproduces what the plugin did before the setting existed) where they hold that
    value. A setting added to a plugin after runs were recorded thus leaves their fingerprints as
    they were while it is at that value; set to anything else, it enters the identity."""
    later = getattr(plugin, "added_later", None) or {}
    if not isinstance(settings, dict) or not later:
        return settings
    return {k: v for k, v in settings.items() if not (k in later and _same_value(v, later[k]))}


def _same_value(v: Any, default: Any) -> bool:
    """``v == default`` with the type's kind (``0`` is ``0.0``; ``False`` is not ``0``)."""
    return type(v) is type(default) and v == default or (_is(v, "number") and _is(default, "number") and v == default)


def pretrain_identity(p: dict, device: str = "cpu") -> dict:
    """The pre-training settings that change what an encoder is (other methods' sections do not).

    ``precision`` enters as resolved on ``device`` (``auto`` is bf16 on one machine and fp32 on
    another: different encoders). ``input_stats`` marks encoders that normalize their input with
    their clean pre-training set's statistics (earlier ones used CIFAR-10's)."""
    from .ssl.methods import METHODS
    from .ssl.precision import resolve_precision

    ident = {k: v for k, v in _chosen_section(p, p["algorithm"], METHODS).items() if k not in _PRETRAIN_NOT_IN_FINGERPRINT}
    ident["precision"] = resolve_precision(p["precision"], device)
    ident["input_stats"] = "pretrain-set"
    # The keys that moved to the defenses (MOVED_TO_DEFENSES) were in every identity, at 0 unless
    # set directly (now refused): they stay, at 0, so that recorded runs and cached clean encoders
    # keep their fingerprints. The defense's own section carries its settings.
    ident.update({k: 0.0 for k in MOVED_TO_DEFENSES})
    return ident


def clean_encoder_key(cfg: dict) -> str:
    """The shared clean encoder's cache key: its data, seed and pre-training identity."""
    return fingerprint({"pretrain_data": cfg["pretrain_data"], "seed": cfg["seed"],
                        "pretrain": pretrain_identity(cfg["pretrain"], cfg["device"])})


def experiment_fingerprint(cfg: dict) -> str:
    """What a run directory holds: every setting that changes a result (the chosen plugins' sections
    only; the chosen attack's and defense's without their ``added_later`` settings where these hold
    their former behaviour's value, :func:`_without_added_later`)."""
    from .attack import ATTACKS
    from .defenses import DEFENSES

    c = {k: v for k, v in cfg.items() if k not in _NOT_IN_FINGERPRINT}
    c["pretrain"] = pretrain_identity(c["pretrain"], cfg["device"])
    c["attack"] = _chosen_section(c["attack"], c["attack"]["name"], ATTACKS)
    name = c["attack"]["name"]
    if name in c["attack"]:
        c["attack"][name] = _without_added_later(c["attack"][name], ATTACKS.get(name))
    d = c["defense"]
    c["defense"] = {"name": d["name"], **({d["name"]: _without_added_later(d[d["name"]], DEFENSES.get(d["name"]))}
                                          if d["name"] in d else {})}
    return fingerprint(c)


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
