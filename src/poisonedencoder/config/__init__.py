"""Experiment configuration: the schema, presets, YAML files, ``--set key=value`` overrides, validation.

A config is a nested dict. Its schema is :func:`defaults`: each section's keys are declared, typed
and checked by their owner as a :class:`~.settings.Settings` class (the run keys here as
:class:`RunSettings`; ``pretrain_data``, ``tasks[]``, ``attack``, ``pretrain``, ``downstream`` beside
their code; each plugin's own section, ``attack.<name>``, ``pretrain.<name>``, ``defense.<name>``,
on the plugin). A key that is not there is an error, so a typo never silently runs the default.
Presets (:mod:`.presets`) fill in pre-training and downstream settings; the user's file and the
command line override them, in that order. Reading files: :mod:`.config_files`; fingerprints:
:mod:`.fingerprints` (both re-exported here).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import Field

from .files import (  # noqa: F401 (the config API: reading and writing configs)
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    MAX_VALUE_CHARS,
    absolute_paths,
    check_repeats,
    dump,
    load_yaml,
    parse_override,
    parse_value,
    parse_yaml,
)
from ..core.errors import UserError, is_integer
from ..core.errors import preview as _preview
from .compat import MOVED_TO_DEFENSES, drop_moved_keys  # noqa: F401 (MOVED_TO_DEFENSES: the config API)
from .fingerprints import clean_encoder_key, experiment_fingerprint, fingerprint, pretrain_identity  # noqa: F401
from .presets import PRESETS
from ..core.settings import PATH, Range, Settings, pick


class RunSettings(Settings):
    """The toolkit's run keys, at the top level of a config."""

    preset: str = Field("cpu", description="paper | cpu | gpu | demo")
    seed: Annotated[int, Range(0, 2**31 - 1)] = 0
    seeds: Optional[list] = Field(None, description="[0, 1, 2] (or --seeds 0,1,2): one run per seed in OUT/seed_<s>/, "
                                  "pooled result in OUT/")
    data_root: Annotated[Optional[str], PATH] = Field(None, description="every dataset is read from here (torchvision "
                                                       "ones downloaded here); --data-root; null: $POISONEDENCODER_DATA, "
                                                       "else ~/.cache/poisonedencoder/data")
    cache_dir: Annotated[Optional[str], PATH] = Field(None, description="decoded datasets, shared clean "
                                                       "encoders, encoders kept by their inputs (~/.cache/poisonedencoder)")
    device: str = Field("cpu", description="cpu | cuda[:N]")

    def check(self, where: str) -> None:  # noqa: ARG002 (top-level keys have no section)
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise UserError(f"device must be cpu or cuda[:N], got {_preview(self.device)}")
        _check_seeds(self.seeds)


def _check_seeds(seeds: Any) -> None:
    """``seeds``: absent (``None``) or a non-empty list of distinct integers in [0, 2^31)."""
    if seeds is None:
        return
    if not seeds or not all(is_integer(x) and 0 <= x < 2**31 for x in seeds):
        raise UserError(f"seeds must be a non-empty list of integers in [0, 2^31), e.g. [0, 1, 2], got {_preview(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds must not repeat a seed, got {_preview(seeds)}")


def _owners() -> dict[str, type[Settings]]:
    """The owner of each section's shared keys (imported here, not when this module is imported)."""
    from ..attack.base import AttackSettings
    from ..data.datasets import PretrainDataSettings
    from ..defenses.base import DefenseSettings
    from ..downstream import DownstreamSettings

    return {"pretrain_data": PretrainDataSettings, "attack": AttackSettings, "defense": DefenseSettings,
            "downstream": DownstreamSettings}


def _all_owners() -> list[tuple[str, type[Settings]]]:
    """Every owner of keys that are not a plugin's, with the prefix of its keys (``""`` for the
    run keys, ``tasks[].`` for a task's; ``pretrain.`` twice: the loop and the augmentation)."""
    from ..attack.targets import TaskSettings
    from ..ssl.settings import AugmentSettings, PretrainSettings

    return [("", RunSettings), ("tasks[].", TaskSettings), ("pretrain.", PretrainSettings), ("pretrain.", AugmentSettings),
            *((f"{section}.", owner) for section, owner in _owners().items())]


def _registries() -> dict[str, dict]:
    """The plugin registries by config section."""
    from ..attack import ATTACKS
    from ..defenses import DEFENSES
    from ..ssl.methods import METHODS

    return {"attack": ATTACKS, "pretrain": METHODS, "defense": DEFENSES}


def _has_settings(plugin) -> bool:
    return bool(plugin.Settings.model_fields)


def defaults() -> dict[str, Any]:
    """The whole schema: every section's keys and defaults, and one section per plugin with settings
    of its own (``attack.<name>``, ``pretrain.<name>``, ``defense.<name>``), from the registries."""
    from ..ssl.settings import pretrain_defaults

    run, owners = RunSettings.defaults(), _owners()
    out = {**{k: run[k] for k in ("preset", "seed", "seeds", "data_root", "cache_dir", "device")},
           "pretrain_data": owners["pretrain_data"].defaults(), "tasks": [], "attack": owners["attack"].defaults(),
           "pretrain": pretrain_defaults(), "defense": owners["defense"].defaults(),
           "downstream": owners["downstream"].defaults()}
    for section, registry in _registries().items():
        for name, plugin in registry.items():
            if _has_settings(plugin):
                out[section][name] = plugin.Settings.defaults()
    return out


def descriptions() -> dict[str, str]:
    """What each key means (docs/CONFIG.md's comments): the fields' descriptions, with the choices
    of the registries filled in; a plugin section's own line from its ``Settings.doc``."""
    from ..ssl.models import BACKBONES

    regs = _registries()
    names = {"{attacks}": regs["attack"], "{methods}": regs["pretrain"], "{defenses}": regs["defense"],
             "{backbones}": BACKBONES}
    out = {prefix + k: v for prefix, owner in _all_owners() for k, v in owner.descriptions().items()}
    out["tasks"] = "target downstream tasks (default: one task on the pre-training dataset)"
    for k, v in out.items():
        for placeholder, registry in names.items():
            v = v.replace(placeholder, " | ".join(registry))
        out[k] = v
    for section, registry in regs.items():
        for name, plugin in registry.items():
            if _has_settings(plugin):
                out[f"{section}.{name}"] = plugin.Settings.doc or \
                    f"used when {'algorithm' if section == 'pretrain' else 'name'}: {name}"
                out.update({f"{section}.{name}.{k}": v for k, v in plugin.Settings.descriptions().items()})
    return out


def _task_defaults() -> dict[str, Any]:
    from ..attack.targets import TaskSettings

    return TaskSettings.defaults()


def _nullable() -> dict[str, str]:
    """The type of each key whose default is null ("not set"); a task's keys are ``tasks[].<key>``,
    a plugin's ``<section>.<plugin>.<key>``."""
    owners = [*_all_owners(), *((f"{section}.{name}.", plugin.Settings) for section, registry in _registries().items()
                                for name, plugin in registry.items() if _has_settings(plugin))]
    return {p + k: o.kind(k) for p, o in owners for k, f in o.model_fields.items() if f.default is None}


def __getattr__(name: str):
    # TASK_DEFAULTS and NULLABLE, derived from the owners' schemas when first asked for
    if name == "TASK_DEFAULTS":
        return _task_defaults()
    if name == "NULLABLE":
        return _nullable()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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



def resolve(user: dict | None = None, overrides: list[str] | tuple = ()) -> dict:
    """Defaults <- preset <- user config <- overrides, then validate."""
    user = dict(user or {})
    over: dict = {}
    for o in overrides:
        over = _deep_update(over, parse_override(o))
    over = absolute_paths(over, Path.cwd())  # paths on the command line: relative to the working directory
    preset = over.get("preset", user.get("preset", RunSettings.model_fields["preset"].default))
    if not isinstance(preset, str) or preset not in PRESETS:
        raise UserError(f"unknown preset {_preview(preset)}; choose one of: {', '.join(PRESETS)}")
    if "pretrain" in user:
        user["pretrain"] = drop_moved_keys(user["pretrain"], "config: ")
    if "pretrain" in over:
        over["pretrain"] = drop_moved_keys(over["pretrain"], "--set ")
    cfg = _merge(defaults(), PRESETS[preset])
    cfg = _merge(cfg, user)
    cfg = _merge(cfg, over)
    cfg["preset"] = preset
    if cfg["tasks"] is not None and not isinstance(cfg["tasks"], list):
        raise UserError(f"tasks must be a list of mappings (each with a 'dataset' key), got {_preview(cfg['tasks'])}")
    cfg["tasks"] = [_merge(_task_defaults(), t, f"tasks[{i}].") if isinstance(t, dict) else _bad_task(i)
                    for i, t in enumerate(cfg["tasks"] or [])]
    if not cfg["tasks"]:
        cfg["tasks"] = [_merge(_task_defaults(), {"dataset": cfg["pretrain_data"]["dataset"]})]
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


def validate(cfg: dict) -> None:
    """Each section parsed and checked by its owner, then each plugin checks its own section (the
    chosen one and, so that a typo never waits, the others), then how the poisoned encoder trains
    under the defense."""
    from ..attack import ATTACKS, build_attack
    from ..attack.targets import TaskSettings
    from ..defenses import DEFENSES, build_defense
    from ..ssl.methods import METHODS
    from ..ssl.pretrain import check_hooks
    from ..ssl.settings import AugmentSettings, PretrainSettings

    RunSettings.parse(pick(cfg, RunSettings), "")
    owners = _owners()
    owners["pretrain_data"].parse(cfg["pretrain_data"], "pretrain_data")
    a = cfg["attack"]
    owners["attack"].parse(pick(a, owners["attack"]), "attack")
    build_attack(a)  # the chosen attack's own section
    for name, attack in ATTACKS.items():
        if _has_settings(attack) and name != a["name"]:
            attack.Settings.parse(a.get(name, {}), f"attack.{name}")
    p = cfg["pretrain"]
    PretrainSettings.parse(pick(p, PretrainSettings), "pretrain")
    AugmentSettings.parse(pick(p, AugmentSettings), "pretrain")
    for name, method in METHODS.items():
        if _has_settings(method):
            method.Settings.parse(p.get(name, {}), f"pretrain.{name}")
    owners["defense"].parse(pick(cfg["defense"], owners["defense"]), "defense")
    chosen = build_defense(cfg["defense"])
    for name, defense in DEFENSES.items():
        if _has_settings(defense) and name != cfg["defense"]["name"]:
            defense.Settings.parse(cfg["defense"].get(name, {}), f"defense.{name}")
    check_hooks(chosen.adjust_pretrain(dict(p)), **chosen.training_hooks())  # how the poisoned encoder trains
    owners["downstream"].parse(cfg["downstream"], "downstream")
    for i, t in enumerate(cfg["tasks"]):
        TaskSettings.parse(t, f"tasks[{i}]")
