"""Fingerprints: what identifies a run directory and a shared clean encoder. Settings that change
where or how fast a run goes (device, paths, threads, checkpoints) are left out; every setting that
changes a result is in. Recorded runs resume by these, so a change here is a change of every
record (tests/test_identity_pins.py pins them)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ..core.errors import is_number
from .compat import MOVED_TO_DEFENSES


def fingerprint(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# settings that change where or how fast a run goes, not what it computes
_NOT_IN_FINGERPRINT = ("device", "data_root", "cache_dir", "seeds")  # seeds: the runner splits them into runs
_PRETRAIN_NOT_IN_FINGERPRINT = ("threads", "snapshot_every", "compile", "memory_format", "checkpoint_every")


def _chosen_section(section: dict, chosen: str, names) -> dict:
    """``section`` without the plugin sections of the plugins not chosen."""
    return {k: v for k, v in section.items() if not (k in names and k != chosen)}


def pretrain_identity(p: dict, device: str = "cpu") -> dict:
    """The pre-training settings that change what an encoder is (other methods' sections do not).

    ``precision`` enters as resolved on ``device`` (``auto`` is bf16 on one machine and fp32 on
    another: different encoders). ``input_stats`` marks encoders that normalize their input with
    their clean pre-training set's statistics (earlier ones used CIFAR-10's)."""
    from ..ssl.methods import METHODS
    from ..ssl.precision import resolve_precision

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


def _without_added_later(settings: Any, plugin: Any) -> Any:
    """A plugin's settings without those its ``Settings`` marks added later
    (:data:`~poisonedencoder.core.settings.ADDED_LATER`) where they hold their default: the value that
    reproduces what the plugin did before the setting existed. A setting added after runs were
    recorded thus leaves their fingerprints as they were at that value; set to anything else, it
    enters the identity."""
    later = plugin.Settings.added_later() if plugin is not None else {}
    if not isinstance(settings, dict) or not later:
        return settings
    return {k: v for k, v in settings.items() if not (k in later and _same_value(v, later[k]))}


def _same_value(v: Any, default: Any) -> bool:
    """``v == default`` within the type's kind (``0`` is ``0.0``; ``False`` is not ``0``)."""
    return (type(v) is type(default) or (is_number(v) and is_number(default))) and v == default


def experiment_fingerprint(cfg: dict) -> str:
    """What a run directory holds: every setting that changes a result (the chosen plugins' sections
    only; the chosen attack's and defense's without their settings added later where these hold
    their former behaviour's value, :func:`_without_added_later`)."""
    from ..attack import ATTACKS
    from ..defenses import DEFENSES

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

