"""Typed settings (settings.py): strict types, one-line errors naming the key, each section owned and
parsed by its owner, and plugins built from their own parsed section only."""
from typing import Annotated, Optional

import pytest
from pydantic import Field, ValidationError

from poisonedencoder import config as C
from poisonedencoder.core.errors import UserError
from poisonedencoder.core.settings import Number, Range, Settings, kind_of


class Toy(Settings):
    n: int = 3
    x: Annotated[Number, Range(0, 1, lo_open=True)] = Field(0.5, description="a number")
    flag: bool = False
    name: str = "a"
    scale: list[Number] = [0.1, 1.0]
    limit: Annotated[Optional[int], Range(1, 100)] = None

    def check(self, where: str) -> None:
        if self.n > 10:
            raise UserError(f"{where}.n must be at most 10, got {self.n}")


@pytest.mark.parametrize("values,message", [
    ({"n": "3"}, "toy.n must be an integer, got '3'"),
    ({"n": True}, "toy.n must be an integer, got True"),
    ({"n": 1.5}, "toy.n must be an integer, got 1.5"),
    ({"x": True}, "toy.x must be a number, got True"),
    ({"x": "1e-3"}, "toy.x must be a number, got '1e-3' (YAML reads 1e-3 as text; write 0.001)"),
    ({"flag": 1}, "toy.flag must be true or false, got 1"),
    ({"name": 5}, "toy.name must be text, got 5"),
    ({"scale": 5}, "toy.scale must be a list, got 5"),
    ({"scale": ["a", 1]}, "toy.scale must be a list of numbers, got ['a', 1]"),
    ({"limit": "x"}, "toy.limit must be an integer, got 'x'"),
    ({"typo": 1}, "unknown config key 'toy.typo'"),
    ({"n": 11}, "toy.n must be at most 10, got 11"),
    ({"x": 0}, "toy.x must be in (0, 1], got 0"),  # Range, lower end open
    ({"x": 1.5}, "toy.x must be in (0, 1], got 1.5"),
    ({"limit": 0}, "toy.limit must be in [1, 100], got 0"),
])
def test_parse_is_strict_and_names_the_key_in_one_line(values, message):
    with pytest.raises(UserError) as e:
        Toy.parse(values, "toy")
    assert str(e.value) == message


def test_parse_keeps_values_as_written_and_fills_defaults():
    t = Toy.parse({"x": 1, "limit": None}, "toy")  # null where null is allowed: no range to check
    assert t.x == 1 and type(t.x) is int  # an integer is a number; not turned into 1.0
    assert (t.n, t.flag, t.scale, t.limit) == (3, False, [0.1, 1.0], None)
    with pytest.raises(ValidationError, match="frozen"):
        t.n = 4  # parsed settings are frozen
    assert Toy.defaults() == {"n": 3, "x": 0.5, "flag": False, "name": "a", "scale": [0.1, 1.0], "limit": None}
    assert Toy.descriptions() == {"x": "a number"}
    assert [Toy.kind(k) for k in Toy.model_fields] == ["integer", "number", "boolean", "text", "list", "integer"]
    assert kind_of(Optional[Number]) == "number"
    with pytest.raises(UserError, match="toy must be a mapping, got 5"):
        Toy.parse(5, "toy")


def test_the_schema_is_assembled_from_the_owners():
    from poisonedencoder.attack import ATTACKS
    from poisonedencoder.attack.base import AttackSettings
    from poisonedencoder.defenses import DEFENSES
    from poisonedencoder.downstream import DownstreamSettings
    from poisonedencoder.ssl.methods import METHODS
    from poisonedencoder.ssl.settings import AugmentSettings, PretrainSettings

    d = C.defaults()
    assert d["downstream"] == DownstreamSettings.defaults()
    assert {k: d["attack"][k] for k in AttackSettings.model_fields} == AttackSettings.defaults()
    assert set(d["pretrain"]) == set(PretrainSettings.model_fields) | set(AugmentSettings.model_fields) | \
        {n for n, m in METHODS.items() if m.Settings.model_fields}
    for section, registry in (("attack", ATTACKS), ("defense", DEFENSES), ("pretrain", METHODS)):
        for name, plugin in registry.items():
            if plugin.Settings.model_fields:
                assert d[section][name] == plugin.Settings.defaults()
    # a description set on an owner's field reaches docs/CONFIG.md's comments
    assert C.descriptions()["downstream.knn_k"] == DownstreamSettings.model_fields["knn_k"].description


def test_plugins_receive_their_own_parsed_section():
    from poisonedencoder.attack import build_attack
    from poisonedencoder.defenses import build_defense
    from poisonedencoder.ssl.methods import build_method
    from poisonedencoder.ssl.methods.mocov2 import MoCoV2Settings

    cfg = C.resolve({}, ["attack.poisonedencoder.gap=2", "defense.name=part_hash", "defense.part_hash.min_group=7",
                         "pretrain.algorithm=mocov2", "pretrain.mocov2.queue_size=64", "pretrain.width=4",
                         "pretrain.projection_dim=8"])
    attack = build_attack(cfg["attack"])
    assert attack.settings.gap == 2 and attack.settings.layout == "random"
    assert build_defense(cfg["defense"]).settings.min_group == 7
    method = build_method(cfg["pretrain"])
    assert isinstance(method.settings, MoCoV2Settings) and method.settings.queue_size == 64
    assert method.queue.shape == (64, 8)  # built from its own section and the architecture's projection_dim
    assert method.arch.width == 4 and not hasattr(method.arch, "epochs")  # the loop's keys never reach a method


def test_fingerprints_hash_the_config_not_the_parsed_settings():
    # pydantic's lax mode would turn 1 into 1.0; the config dict keeps 1, and the fingerprint of an
    # integer-valued float setting written as an integer is the one recorded runs were stamped with
    from poisonedencoder.config import fingerprints
    a = C.resolve({}, ["pretrain.lr=1"])
    assert a["pretrain"]["lr"] == 1 and type(a["pretrain"]["lr"]) is int
    assert C.experiment_fingerprint is fingerprints.experiment_fingerprint
    assert fingerprints.experiment_fingerprint(a) != fingerprints.experiment_fingerprint(C.resolve({}, ["pretrain.lr=1.0"]))


def test_equal_ranges_of_different_types_stay_apart():
    # typing caches Annotated[...] by equality; Range(0, 1) == Range(0.0, 1.0) would swap the bounds
    # that two fields print
    class A(Settings):
        a: Annotated[Number, Range(0, 1)] = 0.5
        b: Annotated[Number, Range(0.0, 1.0)] = 0.5

    with pytest.raises(UserError, match=r"^a must be in \[0, 1\], got 2$"):
        A.parse({"a": 2}, "")
    with pytest.raises(UserError, match=r"^b must be in \[0.0, 1.0\], got 2$"):
        A.parse({"b": 2}, "")


def test_a_config_written_before_a_plugin_existed_still_validates():
    cfg = C.resolve({})
    for section, name in (("defense", "crop_disagreement"), ("attack", "icp"), ("pretrain", "byol")):
        del cfg[section][name]
    C.validate(cfg)  # the missing sections are their defaults
