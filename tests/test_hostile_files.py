"""Files and values that a hostile (or careless) user hands the toolkit, beside
tests/test_hostile_input.py: each is refused with one line and exit status 2, or handled safely;
docs/CONFIG.md, "What is refused and why", lists them.

| input                                                        | test                                   |
|--------------------------------------------------------------|----------------------------------------|
| YAML aliases nested to expand to billions of values ("billion laughs"), in a file, ``--set`` or a merge key; an alias inside its own anchor | test_yaml_alias_bomb_*, test_yaml_recursive_alias_* |
| ``sweep --values ""`` or ``",,,"`` (with or without ``--parallel``), an empty list | test_sweep_without_a_value_*, test_sweep_of_an_empty_list_* |
| one key set twice: `--set` repeated, `--set` and a flag, a key and a mapping holding it | test_a_key_set_twice_* |
"""
import subprocess
import sys
from pathlib import Path

import pytest

from poisonedencoder import cli
from poisonedencoder import config as C
from poisonedencoder.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

TINY = ("pretrain_data: {dataset: digits, num_images: 600}\ntasks: [{dataset: digits, num_targets: 2}]\n"
        "attack: {poisoning_rate: 0.05, num_references: 5}\n"
        "pretrain: {width: 4, image_size: 16, epochs: 1, batch_size: 64, threads: 1}\ndownstream: {epochs: 2}\n")


def _cli(capsys, *argv) -> tuple[int, str]:
    rc = cli.main(list(argv))
    return rc, capsys.readouterr().err


def _one_line_error(rc: int, err: str, *parts: str) -> None:
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err[:2000]
    for p in parts:
        assert p in err, err


def _subprocess(*argv, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    """The command line in a process of its own, bounded in time: a hang fails the test, never the suite."""
    return subprocess.run([sys.executable, "-m", "poisonedencoder", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


# ------------------------------------------------------------------------------------ YAML aliases
def _laughs(levels: int = 9, flow: bool = False) -> str:
    """Nested aliases: each level a list of 9 aliases of the one before, 9**levels strings in all (a
    few hundred bytes). ``flow``: one flow mapping, for ``--set``."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "{" + ", ".join(lines) + "}" if flow else "\n".join(lines) + "\n"


def test_yaml_alias_bomb_in_a_config_file_is_one_line_at_once(tmp_path):
    cfg = tmp_path / "laughs.yaml"
    cfg.write_text(_laughs())
    assert len(cfg.read_bytes()) < 500
    r = _subprocess("craft", cfg, "--out", tmp_path / "run", timeout=60)  # a hang: TimeoutExpired
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert f"config file {cfg}" in r.stderr and "more than 100,000 values once its aliases" in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("how", ["set", "merge"])
def test_yaml_alias_bomb_in_a_set_value_or_merge_keys_is_one_line_at_once(tmp_path, how):
    if how == "set":
        value = "tasks=" + _laughs(flow=True)
    else:  # ``<<:`` merges: each level merges the one before 9 times (PyYAML flattens them by copying)
        levels = ["{k0: 1, j0: 2}"] + [f"{{<<: [{', '.join([f'*m{i - 1}'] * 9)}], k{i}: 1}}" for i in range(1, 10)]
        value = "tasks={" + ", ".join(f"m{i}: &m{i} {m}" for i, m in enumerate(levels)) + "}"
    assert len(value) < 1000
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    r = _subprocess("craft", cfg, "--out", tmp_path / "run", "--set", value, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: --set 'tasks': ") and r.stderr.count("\n") == 1, \
        r.stderr[-2000:]
    assert "more than 100,000 values once its aliases" in r.stderr


def test_yaml_recursive_alias_is_one_line():
    with pytest.raises(UserError, match=r"an alias \(\*name\) refers to the value that contains it"):
        C.parse_yaml("a: &x [1, *x]\n", "t")
    with pytest.raises(UserError, match="refers to the value that contains it"):
        C.parse_yaml("a: &x {b: *x}\n", "t")


def test_yaml_anchors_within_the_bound_still_work():
    assert C.parse_yaml("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\ne: [*x, *x]\n", "t") == \
        {"a": {"b": 1}, "c": {"b": 1, "d": 2}, "e": [{"b": 1}, {"b": 1}]}
    assert C.parse_yaml(_laughs(levels=5), "t")["a4"][0][0][0][0][0] == "lol"  # 9**5 = 59,049 strings: accepted


# ------------------------------------------------------------------------------------ sweep without values
@pytest.mark.parametrize("values", ["", ",,,", " , "])
@pytest.mark.parametrize("parallel", [[], ["--parallel", "2"]])
def test_sweep_without_a_value_is_one_line(tmp_path, capsys, values, parallel):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    rc, err = _cli(capsys, "sweep", str(cfg), "--param", "seed", "--values", values, *parallel,
                   "--out", str(tmp_path / "sw"), "--cache-dir", str(tmp_path / "cache"))
    _one_line_error(rc, err, f"sweep --values {values!r} holds no value")
    assert not (tmp_path / "sw").exists()


def test_sweep_of_an_empty_list_is_refused_before_any_work(tmp_path):
    from poisonedencoder import api

    with pytest.raises(UserError, match="holds no value"):
        api.sweep(C.parse_yaml(TINY, "t"), "seed", [], tmp_path / "sw")
    assert not (tmp_path / "sw").exists()


# ------------------------------------------------------------------------------------ a key set twice
@pytest.mark.parametrize("argv,key,says", [
    (["--set", "pretrain.epochs=1", "--set", "pretrain.epochs=2"], "pretrain.epochs",
     "(--set 'pretrain.epochs=1' and --set 'pretrain.epochs=2')"),
    (["--set", "pretrain={epochs: 1, width: 4}", "--set", "pretrain.epochs=2"], "pretrain.epochs", "--set 'pretrain={"),
    (["--set", "pretrain.epochs=2", "--set", "pretrain=null"], "pretrain", "--set 'pretrain=null'"),
    (["--set", "seeds=[2]", "--seeds", "0,1"], "seeds", "(--set 'seeds=[2]' and --seeds '0,1')"),
    (["--set", "device=cpu", "--device", "cpu"], "device", "--device 'cpu'"),
])
def test_a_key_set_twice_is_one_line_naming_it(tmp_path, capsys, argv, key, says):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    rc, err = _cli(capsys, "craft", str(cfg), "--out", str(tmp_path / "run"), *argv)
    _one_line_error(rc, err, f"error: key '{key}' is set twice", says, "keep one")
    assert not (tmp_path / "run").exists()


def test_keys_set_once_each_are_merged():
    from poisonedencoder.cli import _user_and_overrides, build_parser

    args = build_parser().parse_args(["craft", "c.yaml", "--set", "pretrain={width: 4}", "--set", "pretrain.epochs=3",
                                      "--set", "tasks=[{dataset: digits}]", "--seeds", "0,1"])
    args.config = None  # no file read
    cfg = C.resolve(*_user_and_overrides(args))
    assert cfg["pretrain"]["width"] == 4 and cfg["pretrain"]["epochs"] == 3 and cfg["seeds"] == [0, 1]
    args = build_parser().parse_args(["demo", "--preset", "cpu"])  # the demo's own preset is not the user's
    assert C.resolve(*_user_and_overrides(args))["preset"] == "cpu"
