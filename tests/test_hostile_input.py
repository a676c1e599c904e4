"""What a hostile (or careless) user tries, kept together as one table (issue 23). Each case is
refused with one line and exit status 2, before any work, or handled safely; docs/CONFIG.md,
"What is refused and why", lists them.

| input                                                   | test                                              |
|---------------------------------------------------------|---------------------------------------------------|
| sweep value with ``../`` (a folder outside ``--out``)    | test_sweep_value_cannot_leave_out                 |
| ``--out`` holding files the toolkit did not write        | test_out_holding_foreign_files_is_refused         |
| a key repeated in a YAML mapping (two depths, ``--set``) | test_repeated_key_*                               |
| config or ``--set`` nested 2,000 deep                    | test_deep_nesting_is_one_line                     |
| malformed or ``!!python`` ``sweep --values``             | test_bad_sweep_values_are_one_line                |
| a 1 MB+ config file, a 64 kB+ ``--set`` value            | test_huge_*                                       |
| sizes that training would only find out late             | test_finetune_larger_than_spare_fails_before_training |
| two identical runs into one ``--out``                    | test_two_runs_into_one_out_*                      |
| a write that torch words as ``unexpected pos``           | test_any_failed_torch_write_*                     |
| a corrupt encoder file, a folder as config file          | test_corrupt_torch_files_*, test_folder_as_config |
| resumed pre-training's ``seconds.txt``                   | test_seconds_after_resume_*                       |
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


# ------------------------------------------------------------------------------------ 3: repeated keys
def test_repeated_key_at_top_level_names_the_key_and_both_lines(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pretrain:\n  epochs: 3\nseed: 1\npretrain:\n  epochs: 5\n")
    with pytest.raises(UserError, match=r"key 'pretrain' appears twice .*lines 1 and 4"):
        C.load_yaml(cfg)
    rc, err = _cli(capsys, "craft", str(cfg), "--out", str(tmp_path / "run"))
    _one_line_error(rc, err, "'pretrain'", "lines 1 and 4")
    assert not (tmp_path / "run").exists()


def test_repeated_key_nested_names_the_key_and_both_lines(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\npretrain:\n  epochs: 3\n  width: 4\n  epochs: 5\n")
    with pytest.raises(UserError, match=r"key 'epochs' appears twice .*lines 3 and 5"):
        C.load_yaml(cfg)
    cfg.write_text("tasks:\n  - {dataset: digits, num_targets: 2, num_targets: 3}\n")
    with pytest.raises(UserError, match=r"key 'num_targets' appears twice .*line 2, columns"):
        C.load_yaml(cfg)


def test_repeated_key_in_a_set_value(capsys, tmp_path):
    with pytest.raises(UserError, match=r"--set 'pretrain': key 'epochs' appears twice"):
        C.resolve({}, ["pretrain={epochs: 1, epochs: 2}"])
    rc, err = _cli(capsys, "demo", "--out", str(tmp_path / "run"), "--set", "pretrain={epochs: 1, epochs: 2}")
    _one_line_error(rc, err, "'epochs' appears twice")


def test_yaml_merge_keys_are_not_repeated_keys():
    assert C.parse_yaml("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n", "t") == {"a": {"b": 1}, "c": {"b": 1, "d": 2}}


# ------------------------------------------------------------------------------------ 4: tracebacks
@pytest.mark.parametrize("where", ["file", "set"])
def test_deep_nesting_is_one_line(tmp_path, where):
    """2,000 levels, in a subprocess: a crash (a RecursionError traceback, a segfault) cannot pass."""
    deep = "{b: " * 2000 + "1" + "}" * 2000
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"pretrain: {deep}\n" if where == "file" else "seed: 0\n")
    extra = ["--set", "tasks=" + "[" * 2000 + "]" * 2000] if where == "set" else []
    r = subprocess.run([sys.executable, "-m", "poisonedencoder", "craft", str(cfg), "--out", str(tmp_path / "run"), *extra],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "nested too deeply" in r.stderr
    assert len(r.stderr) < 400


def test_bad_sweep_values_are_one_line(tmp_path, capsys):
    from poisonedencoder.sweep import parse_values

    assert parse_values("[0.2,1.0],[0.4,1.0]") == [[0.2, 1.0], [0.4, 1.0]]  # commas inside brackets: one value
    for values, says in (("[0.2,1.0],[0.4,1.0", "'[0.4,1.0' is not a valid value"),
                         ('!!python/object/apply:os.system ["touch pwned"]', "could not determine a constructor"),
                         ("{a: 1, a: 2}", "appears twice"),
                         ("[" * 2000 + "]" * 2000, "nested too deeply")):
        rc, err = _cli(capsys, "sweep", str(ROOT / "configs" / "digits_demo.yaml"), "--param", "pretrain.crop_scale",
                       "--values", values, "--out", str(tmp_path / "sw"), "--cache-dir", str(tmp_path / "cache"))
        _one_line_error(rc, err, says)
    assert not (tmp_path / "sw").exists() and not Path("pwned").exists()


# ------------------------------------------------------------------------------------ 5: huge inputs
def test_huge_config_file_is_refused_at_once(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 0\n" + "# padding\n" * 150_000)  # 1.5 MB
    rc, err = _cli(capsys, "craft", str(cfg), "--out", str(tmp_path / "run"))
    _one_line_error(rc, err, "larger than 1000 kB")


def test_huge_set_value_is_refused_and_no_value_is_echoed_whole(tmp_path, capsys):
    rc, err = _cli(capsys, "demo", "--out", str(tmp_path / "run"), "--set", "pretrain.backbone=" + "x" * 100_000)
    _one_line_error(rc, err, "more than the 65536 accepted")
    assert len(err) < 300
    rc, err = _cli(capsys, "demo", "--out", str(tmp_path / "run"), "--set", "pretrain.backbone=" + "x" * 60_000)
    _one_line_error(rc, err, "unknown backbone", "(60002 characters)")  # echoed as a preview
    assert len(err) < 400
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tasks: [{dataset: '" + "y" * 900_000 + "'}]\n")
    rc, err = _cli(capsys, "craft", str(cfg), "--out", str(tmp_path / "run"))
    _one_line_error(rc, err, "unknown dataset")
    assert len(err) < 600


# ------------------------------------------------------------------------------------ 9: messages
def test_folder_as_config(tmp_path, capsys):
    rc, err = _cli(capsys, "craft", str(tmp_path), "--out", str(tmp_path / "run"))
    _one_line_error(rc, err, "is a folder, not a file")


# ------------------------------------------------------------------------------------ 1: sweep folders
def test_sweep_value_cannot_leave_out(tmp_path, monkeypatch, capsys):
    """Each value's run is made (its folder, config.yaml, .fingerprint) and stopped: every file
    lies under --out, in a folder whose name has no separator."""
    from poisonedencoder.pipeline import Experiment

    made = []

    def stop(self):
        made.append(self.out)
        raise UserError("stopped here")

    monkeypatch.setattr(Experiment, "run", stop)
    out = tmp_path / "a" / "b" / "c" / "d" / "o"
    cfg = tmp_path / "cache" / "c.yaml"
    cfg.parent.mkdir()
    cfg.write_text(TINY)
    for value in ("../../../../escape", str(tmp_path / "abs"), "x" * 300):
        rc, err = _cli(capsys, "sweep", str(cfg), "--param", "data_root",
                       "--values", value, "--out", str(out), "--cache-dir", str(tmp_path / "cache"))
        _one_line_error(rc, err, "stopped here")
    outside = [p for p in tmp_path.rglob("*") if not (p.is_relative_to(out) or p.is_relative_to(tmp_path / "cache")
                                                       or out.is_relative_to(p))]
    assert outside == []
    assert [d.parent for d in made] == [out] * 3 and all((d / ".fingerprint").is_file() for d in made)
    assert all(len(d.name) <= 80 and ".." not in d.name and "/" not in d.name for d in made)
    from poisonedencoder.sweep import value_dir

    assert value_dir("attack.poisoning_rate", 0.03) == "attack.poisoning_rate=0.03"  # plain names stay as they were
    assert value_dir("data_root", "../x") != value_dir("data_root", "_./x")  # the hash keeps values apart
