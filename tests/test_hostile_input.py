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
from poisonedencoder.core.errors import UserError

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
    from poisonedencoder.studies.sweep import parse_values

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
    from poisonedencoder.experiment.pipeline import Experiment

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
    from poisonedencoder.studies.sweep import value_dir

    assert value_dir("attack.poisoning_rate", 0.03) == "attack.poisoning_rate=0.03"  # plain names stay as they were
    assert value_dir("data_root", "../x") != value_dir("data_root", "_./x")  # the hash keeps values apart


# ------------------------------------------------------------------------------------ 2: a user's files in --out
@pytest.mark.parametrize("command", ["run", "sweep", "claims", "seeds"])
def test_out_holding_foreign_files_is_refused(tmp_path, capsys, command):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("my own notes\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    argv = {"run": ["run", str(cfg)], "seeds": ["run", str(cfg), "--seeds", "0,1"],
            "sweep": ["sweep", str(cfg), "--param", "seed", "--values", "0,1"],
            "claims": ["claims", str(cfg), "--seeds", "0,1"]}[command]
    rc, err = _cli(capsys, *argv, "--out", str(out), "--cache-dir", str(tmp_path / "cache"))
    _one_line_error(rc, err, f"{out} is not empty (config.yaml) and holds no run of this toolkit")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"] and (out / "config.yaml").read_text() == "my own notes\n"


def test_out_that_the_toolkit_made_is_accepted(tmp_path):
    from poisonedencoder.core.folders import is_own_dir

    d = tmp_path / "d"
    assert is_own_dir(d)  # missing
    d.mkdir()
    assert is_own_dir(d)  # empty
    (d / ".lock").write_text("")
    (d / ".config.yaml.0123456789ab.tmp").write_text("half")
    assert is_own_dir(d)  # interrupted before its fingerprint: only a lock and a temporary file
    (d / "x=1").mkdir()
    (d / "x=1" / ".fingerprint").write_text("f\n")
    assert not is_own_dir(d)  # a run inside proves nothing: the marker at the top does
    for own in (".fingerprint", ".poisonedencoder"):
        e = tmp_path / own.strip(".")
        e.mkdir()
        (e / "notes.txt").write_text("")
        assert not is_own_dir(e)
        (e / own).write_text("")
        assert is_own_dir(e)
    for theirs in ("sweep.csv", "claims.json", "claims.md"):  # a table's name is not a mark: a user's file may have it
        e = tmp_path / theirs
        e.mkdir()
        (e / theirs).write_text("")
        assert not is_own_dir(e)


# ------------------------------------------------------------------------------------ 6: late checks
@pytest.mark.parametrize("num_clean", [100000, None])  # None: the default 5,000, with all of digits pre-trained on
def test_finetune_larger_than_spare_fails_before_training(tmp_path, monkeypatch, capsys, num_clean):
    import poisonedencoder.ssl.pretrain as P

    monkeypatch.setattr(P, "pretrain", lambda *_a, **_k: pytest.fail("an encoder trained before the check"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY if num_clean else TINY.replace("num_images: 600", "num_images: null"))
    over = ["--set", f"defense.finetune.num_clean={num_clean}"] if num_clean else []
    rc, err = _cli(capsys, "run", str(cfg), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
                   "--set", "defense.name=finetune", *over)
    _one_line_error(rc, err, "defense.finetune.num_clean", "train inputs that pre-training did not use")
    assert not (tmp_path / "run" / "poisons").exists()  # not even crafted


# ------------------------------------------------------------------------------------ 7: two runs, one --out
def test_two_runs_into_one_out_train_once(tmp_path, race, slow_pretrain):
    """The same run twice at once into one folder: the second waits on OUT/.lock, says so, then
    reuses what the first made (without the lock both crafted and trained into one checkpoint)."""
    from poisonedencoder.experiment.pipeline import Experiment

    calls, most = slow_pretrain.calls, slow_pretrain.most
    import yaml

    cfg = C.resolve({**yaml.safe_load(TINY), "cache_dir": str(tmp_path / "cache")})
    logs: list[list[str]] = [[], []]
    exps = [Experiment(cfg, tmp_path / "run", log=logs[i].append) for i in range(2)]
    exps[0].data.clean_pretrain_images()  # decode the dataset once, before the race
    errors = race(lambda i: exps[i].pretrain("poisoned"))
    assert not errors and calls == ["pretrain poisoned"] and most[0] == 1
    waited = [i for i in range(2) if any("another run is using" in s for s in logs[i])]
    assert len(waited) == 1 and any("reusing" in s for s in logs[waited[0]])
    assert sum(any(s.startswith("craft: ") and "reusing" not in s for s in log) for log in logs) == 1  # crafted once


# ------------------------------------------------------------------------------------ 8: write failures
@pytest.mark.parametrize("message,shown", [
    ("[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726\nframe #0: ...", "unexpected pos"),
    ("PytorchStreamWriter failed writing file data/0: file write failed", "file write failed")])
def test_any_failed_torch_write_is_one_line_naming_the_path(tmp_path, monkeypatch, message, shown):
    import torch

    from poisonedencoder.core import io as pio
    from poisonedencoder.core.torch_files import save_torch

    def full(obj, f):  # noqa: ARG001 (torch.save's signature)
        raise RuntimeError(message)

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as e:
        save_torch(tmp_path / "checkpoint.pt", {"a": 1})
    msg = pio.os_error_message(e.value)
    assert msg.endswith(f": {tmp_path / 'checkpoint.pt'}") and shown in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_any_failed_torch_write_under_ulimit_f(tmp_path):
    """A real ``ulimit -f``: torch says ``unexpected pos``; one line naming the file, nothing left."""
    script = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\nimport torch\n"
              "from poisonedencoder.core.io import os_error_message\nfrom poisonedencoder.core.torch_files import save_torch\n"
              "try:\n    save_torch(sys.argv[1] + '/checkpoint.pt', {'w': torch.zeros(1_000_000)})\n"
              "except OSError as e:\n    print(os_error_message(e))\n    sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr[-2000:]
    assert r.stdout.count("\n") == 1 and r.stdout.strip().endswith(str(tmp_path / "checkpoint.pt"))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ 9: corrupt files
def _corrupt_files(tmp_path) -> dict:
    import pickle

    import torch

    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    data = good.read_bytes()
    files = {"is empty": b"", "truncated or damaged zip archive": data[: len(data) // 2],
             "not a zip archive of tensors": b"e" + data[1:200],
             "looks like a pickle": pickle.dumps({"w": [1.0]}, protocol=2)}
    out = {}
    for i, (says, raw) in enumerate(files.items()):
        out[says] = tmp_path / f"bad{i}.pt"
        out[says].write_bytes(raw)
    script = torch.jit.script(torch.nn.Linear(2, 2))
    out["TorchScript archive"] = tmp_path / "scripted.pt"
    torch.jit.save(script, str(out["TorchScript archive"]))
    return out


def test_corrupt_torch_files_say_what_they_are_not(tmp_path):
    from poisonedencoder.core.torch_files import load_torch

    for says, path in _corrupt_files(tmp_path).items():
        with pytest.raises(UserError) as e:
            load_torch(path)
        msg = str(e.value)
        assert says in msg and str(path) in msg and "\n" not in msg, msg
        assert "weights_only" not in msg and "EOFError" not in msg and "KeyError" not in msg, msg


def test_corrupt_outside_encoder_files_say_what_they_are_not(tmp_path):
    from poisonedencoder.experiment.external import load_encoder

    for says, path in _corrupt_files(tmp_path).items():
        if says == "TorchScript archive":
            continue  # a TorchScript file is an encoder for --encoder
        with pytest.raises(UserError) as e:
            load_encoder(path, arch="cnn7", width=4)
        msg = str(e.value)
        assert says in msg and "weights_only" not in msg and "\n" not in msg, msg


# ------------------------------------------------------------------------------------ 10: time after a resume
def test_seconds_after_resume_count_the_whole_training(tmp_path):
    """An interrupted pre-training (its checkpoint after epoch 1 says 1,000 s went into it) resumed
    for epoch 2: seconds.txt's first token is the total, its second line the resumed share."""
    import json

    import numpy as np

    from poisonedencoder.core.torch_files import load_torch, save_torch
    from poisonedencoder.experiment.pipeline import pretrain_encoder, pretrain_seconds
    from poisonedencoder.ssl import pretrain as P

    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(batch_size=16, width=4, image_size=8, epochs=1, threads=1)
    data = lambda: P.PretrainSet.from_images(np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3), dtype=np.uint8))  # noqa: E731
    d = tmp_path / "enc"
    pretrain_encoder("clean", data, p, d, 0, "cpu", log=lambda _: None)
    first = json.loads((d / "seconds.json").read_text())
    assert first["resumed"] is False and pretrain_seconds(d) == first["total_seconds"]
    state = load_torch(d / "checkpoint.pt")
    assert 0 < state["seconds"] < 1000
    save_torch(d / "checkpoint.pt", {**state, "seconds": 1000.0})  # as if epoch 1 had taken 1,000 s
    (d / "encoder.pt").unlink()  # interrupted before the end
    pretrain_encoder("clean", data, {**p, "epochs": 2}, d, 0, "cpu", log=lambda _: None)
    total = pretrain_seconds(d)
    s = json.loads((d / "seconds.json").read_text())
    assert s["resumed"] is True and s["resumed_after_epoch"] == 1 and s["seconds_before_resume"] == 1000.0
    assert total == s["total_seconds"] and 1000 <= total < 1000 + 60 and 0 <= s["resumed_seconds"] < 60
    line = (d / "seconds.txt").read_text().splitlines()[1]
    assert line.startswith("resumed after epoch 1: ") and "1000.0 s before it" in line
    assert 1000 <= load_torch(d / "checkpoint.pt")["seconds"] <= total + 1  # a later resume counts both calls
