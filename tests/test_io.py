"""Files: permissions that follow the umask, folders checked before any work, one-line errors for
filesystem faults, checkpoints that say how to recover."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from poisonedencoder import cli
from poisonedencoder import config as C
from poisonedencoder.core import folders, torch_files
from poisonedencoder.core import io as pio
from poisonedencoder.core.errors import UserError
from poisonedencoder.experiment.pipeline import Experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask():
    def set_(mask):
        old.append(os.umask(mask))
    old: list = []
    yield set_
    for m in reversed(old):
        os.umask(m)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_honours_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    for f in (pio.write_text(tmp_path / "a.txt", "x"), pio.write_json(tmp_path / "m.json", {"a": 1}),
              torch_files.save_torch(tmp_path / "c.pt", {"a": 1})):
        assert stat.S_IMODE(f.stat().st_mode) == mode, f
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "c.pt", "m.json"]  # no temporary files left


def test_atomic_write_leaves_no_temporary_file_when_writing_fails(tmp_path):
    def fail(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        pio.atomic_write(tmp_path / "x.txt", fail)
    assert list(tmp_path.iterdir()) == []


def test_ensure_writable_dir(tmp_path, monkeypatch):
    d = folders.ensure_writable_dir(tmp_path / "new" / "dir", "run directory")
    assert d.is_dir() and list(d.iterdir()) == []  # created, and the check leaves nothing behind
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(UserError, match=f"run directory {f} is a file, not a folder"):
        folders.ensure_writable_dir(f, "run directory")
    with pytest.raises(UserError, match="is not writable: Not a directory"):
        folders.ensure_writable_dir(f / "sub", "run directory")
    # a folder nobody may write to (chattr +i, a read-only mount): creating a file fails
    ro = tmp_path / "ro"
    ro.mkdir()
    real = folders.tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if Path(dir) == ro:
            raise PermissionError(1, "Operation not permitted", str(Path(dir) / ".write-check.x.tmp"))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(folders.tempfile, "mkstemp", mkstemp)
    with pytest.raises(UserError, match=f"cache directory {ro} is not writable: Operation not permitted"):
        folders.ensure_writable_dir(ro, "cache directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root")
def test_ensure_writable_dir_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(UserError, match="not writable"):
            folders.ensure_writable_dir(ro, "cache directory")
    finally:
        ro.chmod(0o755)


def _unwritable(monkeypatch, folder: Path):
    real = folders.tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if Path(dir) == folder:
            raise PermissionError(13, "Permission denied", str(folder))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(folders.tempfile, "mkstemp", mkstemp)


def test_unwritable_cache_fails_before_any_work(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    _unwritable(monkeypatch, cache)
    worked = []
    monkeypatch.setattr(Experiment, "run", lambda _self: worked.append(1))
    cfg = C.resolve({"preset": "demo", "cache_dir": str(cache)})
    with pytest.raises(UserError, match=f"cache directory \\(--cache-dir\\) {cache} is not writable"):
        Experiment(cfg, tmp_path / "run")
    rc = cli.main(["demo", "--out", str(tmp_path / "run"), "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    assert rc == 2 and worked == [] and err.count("\n") == 1 and str(cache) in err and err.startswith("error: ")
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_unwritable_sweep_dir_fails_before_any_work(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    _unwritable(monkeypatch, out)
    import poisonedencoder.studies.sweep as S

    monkeypatch.setattr(S, "run_sweep", lambda *_a, **_k: pytest.fail("sweep ran"))
    rc = cli.main(["sweep", str(ROOT / "configs" / "digits_demo.yaml"), "--param", "seed", "--values", "0,1",
                   "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2 and capsys.readouterr().err == f"error: sweep directory (--out) {out} is not writable: Permission denied\n"


def test_os_error_during_a_run_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    def full_disk(_self):
        raise OSError(28, "No space left on device", str(tmp_path / "run" / "metrics.json"))

    monkeypatch.setattr(Experiment, "run", full_disk)
    rc = cli.main(["demo", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2
    assert capsys.readouterr().err == f"error: No space left on device: {tmp_path / 'run' / 'metrics.json'}\n"


def test_cli_out_naming_an_existing_file(tmp_path):
    f = tmp_path / "taken"
    f.write_text("not a folder")
    r = subprocess.run([sys.executable, "-m", "poisonedencoder", "craft", str(ROOT / "configs" / "digits_demo.yaml"),
                        "--out", str(f), "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr == f"error: run directory (--out) {f} is a file, not a folder; choose another\n"
    assert f.read_text() == "not a folder"


def test_truncated_checkpoint_says_how_to_recover(tmp_path):
    import torch

    p = torch_files.save_torch(tmp_path / "checkpoint.pt", {"model": {"w": torch.zeros(1000)}, "epoch": 3})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="delete it and run the same command again") as e:
        torch_files.load_torch(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_two_runs_needing_the_same_clean_encoder_train_it_once(tmp_path, race, slow_pretrain):
    """Concurrent runs share the cache entry: the second waits on its lock, then reuses the encoder."""
    calls, most = slow_pretrain.calls, slow_pretrain.most
    cfg = C.resolve({"preset": "demo", "cache_dir": str(tmp_path / "cache")})
    logs: list[list[str]] = [[], []]
    exps = [Experiment(cfg, tmp_path / f"run{i}", log=logs[i].append) for i in range(2)]
    exps[0].data.clean_pretrain_images()  # decode the dataset once, before the race
    paths = [None, None]

    def work(i):
        paths[i] = exps[i].pretrain("clean")["clean"]

    errors = race(work, timeout=60)
    assert not errors and paths[0] == paths[1] and paths[0].exists()
    assert calls == ["pretrain clean"] and most[0] == 1
    waited = [i for i in range(2) if any("waiting for it" in s for s in logs[i])]
    assert len(waited) == 1 and any("reusing" in s for s in logs[waited[0]])
    assert (paths[0].parent.parent / f"{paths[0].parent.name}.lock").exists()
