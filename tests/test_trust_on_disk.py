"""Nothing on disk is trusted on its word: the shared cache serves only what passes its check, one
run holds its folder from before its fingerprint is read to its end, no file of the user's is
written over or through a link, and recorded paths lose only the home folder.

| what                                                       | test                                               |
|------------------------------------------------------------|----------------------------------------------------|
| a planted or replaced encoder in ``<cache>/pretrained/``    | test_a_planted_kept_encoder_is_never_served        |
| a run's encoder edited after it came from the cache         | test_editing_a_runs_encoder_leaves_the_cache_intact |
| an entry moved under another key, or without its record    | test_an_entry_for_another_key_or_without_record_is_set_aside |
| a planted clean encoder in ``<cache>/encoders/``            | test_a_planted_clean_encoder_is_never_served       |
| runs reusing one clean encoder at once (shared lock)        | test_runs_reading_a_kept_clean_encoder_do_not_wait_for_each_other_but_wait_for_its_training |
| a planted decoded dataset (``<cache>/datasets/*.npz``)      | test_a_planted_dataset_npz_is_never_served         |
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from poisonedencoder import config as C
from poisonedencoder.experiment import encoder_cache as EC
from poisonedencoder.core.torch_files import save_torch
from poisonedencoder.ssl.pretrain_set import PretrainSet
from poisonedencoder.experiment.stages import pretrain_encoder

TINY = ("pretrain_data: {dataset: digits, num_images: 600}\ntasks: [{dataset: digits, num_targets: 2}]\n"
        "attack: {poisoning_rate: 0.05, num_references: 5}\n"
        "pretrain: {width: 4, image_size: 16, epochs: 1, batch_size: 64, threads: 1}\ndownstream: {epochs: 2}\n")


@pytest.fixture
def fake_pretrain(monkeypatch):
    """``ssl.pretrain.pretrain`` replaced by a stand-in that writes a tiny encoder and a checkpoint
    at once, different for each call; the list of calls (their ``desc``)."""
    import poisonedencoder.ssl.pretrain as P

    calls: list[str] = []

    def fake(data, p, d, seed, device, desc="", log=None):  # noqa: ARG001 (pretrain's signature)
        calls.append(desc)
        w = torch.full((3,), float(len(calls)))
        save_torch(Path(d) / "checkpoint.pt", {"model": {"w": w}, "epoch": 1})
        save_torch(Path(d) / "encoder.pt", {"backbone": {"w": w}, "loss": [1.0]})

    monkeypatch.setattr(P, "pretrain", fake)
    return calls


def _p():
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(width=4, image_size=16, epochs=1, batch_size=32, threads=1, snapshot_every=0)
    return p


def _images(seed=0, n=64, size=16):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _train(name, d, cache, logs, images=None):
    images = _images() if images is None else images
    return pretrain_encoder(name, lambda: PretrainSet.from_images(images), _p(), d, 0, "cpu", log=logs.append, cache=cache)


def _planted(tmp_path) -> Path:
    """Another encoder (written once: torch.save's archive differs from one call to the next)."""
    f = tmp_path / "other.pt"
    if not f.exists():
        save_torch(f, {"backbone": {"w": torch.full((3,), -7.0)}, "loss": [0.0]})
    return f


# ------------------------------------------------------------------------------------ the kept encoders
def test_a_planted_kept_encoder_is_never_served(tmp_path, fake_pretrain):
    """The reproduction: ``rm C/pretrained/<key>/encoder.pt; cp other.pt C/pretrained/<key>/encoder.pt``,
    then the same pre-training again. It trains instead, the planted entry is set aside with one
    line saying why, and a sound entry is kept in its place."""
    cache, logs = tmp_path / "cache", []
    first = _train("first", tmp_path / "first", cache, logs)
    key = EC.published_key(first.parent)
    entry = cache / "pretrained" / key
    assert EC.check(entry, key) is None and (entry / EC.RECORD).is_file()
    (entry / "encoder.pt").unlink()
    shutil.copyfile(_planted(tmp_path), entry / "encoder.pt")

    again = _train("again", tmp_path / "run", cache, logs)
    assert fake_pretrain == ["pretrain first", "pretrain again"]  # trained, not served
    assert again.read_bytes() != _planted(tmp_path).read_bytes() and not (again.parent / EC.REUSED_FILE).exists()
    (aside,) = (cache / "pretrained").glob(f"{key}.rejected-*")
    assert (aside / "encoder.pt").read_bytes() == _planted(tmp_path).read_bytes()
    said = [s for s in logs if "failed its check" in s]
    assert len(said) == 1 and "encoder.pt is not the file that was kept" in said[0] and aside.name in said[0]
    assert EC.check(entry, key) is None and (entry / "encoder.pt").read_bytes() == again.read_bytes()  # kept anew


def test_editing_a_runs_encoder_leaves_the_cache_intact(tmp_path, fake_pretrain):
    """A run's encoder is a copy: ``cp other.pt RUN/encoders/poisoned/encoder.pt`` (the same file
    written over) or writing into it changes neither the kept entry nor what a later run gets."""
    cache, logs = tmp_path / "cache", []
    first = _train("first", tmp_path / "first", cache, logs)
    kept = first.read_bytes()
    run = _train("run", tmp_path / "run", cache, logs)
    assert fake_pretrain == ["pretrain first"] and run.read_bytes() == kept  # served from the cache
    reused = json.loads((run.parent / EC.REUSED_FILE).read_text())
    assert reused["sha256"]["encoder.pt"] == json.loads((cache / "pretrained" / reused["content_key"] / EC.RECORD)
                                                        .read_text())["sha256"]["encoder.pt"]
    with open(run, "r+b") as f:  # cp over an existing file: the same inode, truncated and written
        f.truncate(0)
        f.write(_planted(tmp_path).read_bytes())
    with open(first, "r+b") as f:  # the folder it was kept from, written into
        f.write(b"garbage")
    entry = cache / "pretrained" / reused["content_key"]
    assert (entry / "encoder.pt").read_bytes() == kept and EC.check(entry, reused["content_key"]) is None
    later = _train("later", tmp_path / "later", cache, logs)
    assert fake_pretrain == ["pretrain first"] and later.read_bytes() == kept


@pytest.mark.usefixtures("fake_pretrain")
def test_an_entry_for_another_key_or_without_record_is_set_aside(tmp_path):
    cache, logs = tmp_path / "cache", []
    a = _train("a", tmp_path / "a", cache, logs)
    b = _train("b", tmp_path / "b", cache, logs, images=_images(1))
    ka, kb = EC.published_key(a.parent), EC.published_key(b.parent)
    shutil.rmtree(cache / "pretrained" / kb)
    shutil.copytree(cache / "pretrained" / ka, cache / "pretrained" / kb)  # a's entry, record and all, under b's key
    assert not EC.fetch(cache, kb, tmp_path / "r1", logs.append) and not (tmp_path / "r1").exists()
    assert any(f"it was made for key '{ka}'" in s for s in logs)
    (cache / "pretrained" / ka / EC.RECORD).unlink()  # an entry of an older version, or planted whole
    assert not EC.fetch(cache, ka, tmp_path / "r2", logs.append)
    assert any(f"no {EC.RECORD}" in s for s in logs)
    assert sorted(p.name.split(".rejected-")[0] for p in (cache / "pretrained").glob("*.rejected-*")) == sorted([ka, kb])


def test_a_planted_clean_encoder_is_never_served(tmp_path, fake_pretrain):
    """The clean encoder of a setting, kept in ``<cache>/encoders/<key>/``, is checked too: one
    planted there is set aside, and the clean encoder is the one kept by its content (checked), or
    trained again where that one was planted too."""
    from poisonedencoder.experiment.pipeline import Experiment

    cfg = C.resolve({**yaml.safe_load(TINY), "cache_dir": str(tmp_path / "cache")})
    clean = Experiment(cfg, tmp_path / "one", log=lambda _: None).pretrain("clean")["clean"]
    trained = clean.read_bytes()
    assert fake_pretrain == ["pretrain clean"] and EC.check(clean.parent, clean.parent.name) is None
    for i, also_kept in enumerate((False, True)):
        shutil.copyfile(_planted(tmp_path), clean)
        if also_kept:
            shutil.copyfile(_planted(tmp_path), next((tmp_path / "cache" / "pretrained").glob("*/encoder.pt")))
        logs: list[str] = []
        again = Experiment(cfg, tmp_path / f"run{i}", log=logs.append).pretrain("clean")["clean"]
        assert again == clean and again.read_bytes() != _planted(tmp_path).read_bytes()
        assert any("failed its check" in s and "encoder.pt is not the file that was kept" in s for s in logs)
        assert EC.check(clean.parent, clean.parent.name) is None
    assert fake_pretrain == ["pretrain clean", "pretrain clean"]  # the first time served from the kept copy
    assert clean.read_bytes() != trained  # the second time trained again (the stand-in differs per call)
    assert len(list(clean.parent.parent.glob(f"{clean.parent.name}.rejected-*"))) == 2


def _hold_lock(lock: Path, shared: bool, held, release) -> None:
    """Hold ``lock`` as another run would (its own open file) until ``release`` is set."""
    from poisonedencoder.core.io import file_lock

    with file_lock(lock, shared=shared):
        held.set()
        release.wait(30)


def test_runs_reading_a_kept_clean_encoder_do_not_wait_for_each_other_but_wait_for_its_training(
        tmp_path, fake_pretrain):
    """A finished clean encoder is read under a shared lock: a run reusing it goes on while another
    run reads it (before, every reader took the exclusive lock and a second one waited, logging that
    another run was training the encoder). A run that holds it exclusively, as one training it does,
    still makes a reader wait until it is done."""
    import threading

    from poisonedencoder.experiment.pipeline import Experiment

    cfg = C.resolve({**yaml.safe_load(TINY), "cache_dir": str(tmp_path / "cache")})
    clean = Experiment(cfg, tmp_path / "first", log=lambda _: None).pretrain("clean")["clean"]
    lock = clean.parent.parent / f"{clean.parent.name}.lock"
    for exclusive in (False, True):
        held, release = threading.Event(), threading.Event()
        t = threading.Thread(target=_hold_lock, args=(lock, not exclusive, held, release))
        t.start()
        assert held.wait(30)
        logs: list[str] = []

        def log(line: str, logs=logs, release=release) -> None:  # the holder lets go once the reader waits
            logs.append(line)
            if "waiting for it" in line:
                release.set()

        got = Experiment(cfg, tmp_path / f"run{int(exclusive)}", log=log).pretrain("clean")["clean"]
        release.set()
        t.join(30)
        assert got == clean and any(s.startswith("pretrain clean: reusing") for s in logs)
        waited = [s for s in logs if "waiting for it" in s]  # either lock's wait line
        assert len(waited) == int(exclusive), logs
        assert not exclusive or "another run is training this encoder" in waited[0]
    assert fake_pretrain == ["pretrain clean"]  # trained once, reused by both


# ------------------------------------------------------------------------------------ the decoded datasets
@pytest.mark.parametrize("how", ["record copied", "no record"])
def test_a_planted_dataset_npz_is_never_served(tmp_path, how):
    """A decoded dataset with shuffled labels planted under the cache's name is set aside with one
    line and the dataset decoded again; its size is not read from it either."""
    from poisonedencoder.data.datasets import cached_train_size, load_dataset

    cache, logs = tmp_path / "cache", []
    ds = load_dataset("digits", 8, cache_dir=cache, progress=False, log=logs.append)
    (npz,) = (cache / "datasets").glob("*.npz")
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["train_y"] = np.random.default_rng(0).permutation(arrays["train_y"])
    arrays["train_x"] = arrays["train_x"][:100]
    arrays["train_y"] = arrays["train_y"][:100]
    if how == "no record":
        arrays = {k: v for k, v in arrays.items() if k not in ("key", "sha256")}
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    assert cached_train_size("digits", 8, cache_dir=cache) is None
    again = load_dataset("digits", 8, cache_dir=cache, progress=False, log=logs.append)
    assert np.array_equal(again.train.labels, ds.train.labels) and np.array_equal(again.train.images, ds.train.images)
    assert len(logs) == 1 and "failed its check" in logs[0]
    assert len(list((cache / "datasets").glob("*.rejected-*"))) == 1
    assert cached_train_size("digits", 8, cache_dir=cache) == len(ds.train)  # the decoded file, sound again


# ------------------------------------------------------------------------------------ one run per folder
def _cli(capsys, *argv) -> tuple[int, str]:
    from poisonedencoder import cli

    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def _one_line_error(rc: int, err: str, *parts: str) -> None:
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err[:2000]
    for p in parts:
        assert p in err, err


@pytest.mark.parametrize("seeds", [False, True])
def test_a_second_run_of_another_configuration_stops_while_the_first_runs(tmp_path, capsys, seeds):
    """The reproduction: ``run CFG --out O &`` then ``run CFG --set attack.poisoning_rate=0.1 --out O``
    before the first crafted anything. The first holds ``O/.lock`` from before its fingerprint is
    checked to its end (held here in-process); the second stops at once with one line and exit 2,
    and the folder still says what the first runs."""
    from poisonedencoder.core.errors import UserError
    from poisonedencoder.experiment.pipeline import Experiment
    from poisonedencoder.studies.seeds import SeedRuns

    cfg_file, out, cache = tmp_path / "c.yaml", tmp_path / "run", tmp_path / "cache"
    cfg_file.write_text(TINY + ("seeds: [0]\n" if seeds else ""))
    first_cfg = C.resolve({**yaml.safe_load(cfg_file.read_text()), "cache_dir": str(cache)})
    other_cfg = C.resolve({**yaml.safe_load(cfg_file.read_text()), "cache_dir": str(cache)}, ["attack.poisoning_rate=0.1"])
    Run = SeedRuns if seeds else Experiment
    first = Run(first_cfg, out, log=lambda _: None)
    stamp, config = (out / ".fingerprint").read_text(), (out / "config.yaml").read_text()
    with first._run_lock():  # the first run at work
        with pytest.raises(UserError, match="another run, of a different configuration, is running in"):
            Run(other_cfg, out, log=lambda _: None)
        rc, err = _cli(capsys, "run", cfg_file, "--set", "attack.poisoning_rate=0.1", "--out", out, "--cache-dir", cache)
        _one_line_error(rc, err, f"is running in {out}", "choose another --out")
        assert (out / ".fingerprint").read_text() == stamp and (out / "config.yaml").read_text() == config
    Run(first_cfg, out, log=lambda _: None)  # the lock is free again: the same configuration goes on


# ------------------------------------------------------------------------------------ the user's files
def _user_folder(path: Path, files: dict[str, str]) -> dict[str, str]:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return files


def _unchanged(path: Path, files: dict[str, str]) -> bool:
    return all((path / n).read_text() == t for n, t in files.items())


def test_a_users_files_beside_a_toolkit_run_are_never_overwritten(tmp_path, capsys):
    """The reproduction: a folder with the user's config.yaml and report.md beside a subfolder that
    is a run of the toolkit. Only the toolkit's marker at the top makes a folder the toolkit's."""
    out = tmp_path / "mine"
    mine = _user_folder(out, {"config.yaml": "my notes\n", "report.md": "# my report\n"})
    (out / "old_run").mkdir()
    (out / "old_run" / ".fingerprint").write_text("0123abcd\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    rc, err = _cli(capsys, "run", cfg, "--out", out, "--cache-dir", tmp_path / "cache")
    _one_line_error(rc, err, f"{out} is not empty", "holds no run of this toolkit")
    assert _unchanged(out, mine) and sorted(p.name for p in out.iterdir()) == ["config.yaml", "old_run", "report.md"]


def test_a_users_sweep_csv_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "mine"
    mine = _user_folder(out, {"sweep.csv": "value,my,own\n1,2,3\n"})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    rc, err = _cli(capsys, "sweep", cfg, "--param", "seed", "--values", "0,1", "--out", out, "--cache-dir", tmp_path / "cache")
    _one_line_error(rc, err, f"{out} is not empty (sweep.csv)")
    assert _unchanged(out, mine) and [p.name for p in out.iterdir()] == ["sweep.csv"]


def _claims_out(tmp_path, finished_run) -> Path:
    out = tmp_path / "out"
    finished_run(out / "arms" / "poisonedencoder" / "seed_0", C.resolve({}))
    (out / ".poisonedencoder").write_text("written by poisonedencoder: this folder holds its runs\n")
    return out


@pytest.mark.parametrize("case", ["user's folder", "link to the user's folder", "link to an empty folder",
                                  "a link inside", "a dangling link"])
def test_record_writes_only_into_a_folder_of_its_own_and_never_through_a_link(tmp_path, capsys, finished_run, case):
    """``claims --record DIR`` checked nothing: it followed a link into a non-empty folder and wrote
    over the user's claims.md (as root, a link to /etc would have been written through)."""
    from poisonedencoder.studies.claims import record

    out, target = _claims_out(tmp_path, finished_run), tmp_path / "theirs"
    mine = _user_folder(target, {} if case == "link to an empty folder" else {"claims.md": "my table\n"})
    rec = tmp_path / "rec"
    if case == "user's folder":
        rec = target
    elif case == "a link inside":  # a folder of the toolkit's (a record made before) with a file linked out of it
        record(out, rec)
        (rec / "claims.md").symlink_to(target / "claims.md")
    elif case == "a dangling link":
        rec.symlink_to(tmp_path / "nowhere")
    else:
        rec.symlink_to(target)
    rc, err = _cli(capsys, "claims", "--out", out, "--record", rec)
    expected = {"user's folder": f"{target} is not empty (claims.md)", "a link inside": "is a symbolic link",
                "a dangling link": "which does not exist"}.get(case, f"record folder (--record) {rec} is a symbolic link")
    _one_line_error(rc, err, expected)
    assert _unchanged(target, mine) and sorted(p.name for p in target.iterdir()) == sorted(mine)
    assert not (tmp_path / "nowhere").exists()


def test_record_into_a_new_folder_marks_it_and_can_be_written_again(tmp_path, capsys, finished_run):
    out, rec = _claims_out(tmp_path, finished_run), tmp_path / "rec"
    for _ in range(2):  # a record folder is the toolkit's: recording again writes over its own files only
        rc, _err = _cli(capsys, "claims", "--out", out, "--record", rec)
        assert rc == 0 and (rec / ".poisonedencoder").is_file()
        assert (rec / "arms" / "poisonedencoder" / "seed_0" / "metrics.json").is_file()


@pytest.mark.parametrize("flag", ["--out", "--cache-dir", "--export-imagefolder"])
def test_a_dangling_link_is_named_as_such(tmp_path, capsys, flag):
    """A dangling symbolic link given as a folder was reported as 'File exists'."""
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY)
    argv = {"--out": ["--out", link, "--cache-dir", tmp_path / "cache"],
            "--cache-dir": ["--out", tmp_path / "run", "--cache-dir", link],
            "--export-imagefolder": ["--out", tmp_path / "run", "--cache-dir", tmp_path / "cache",
                                     "--export-imagefolder", link]}[flag]
    rc, err = _cli(capsys, "craft", cfg, *argv)
    _one_line_error(rc, err, f"{link} is a symbolic link", str(tmp_path / "gone"), "does not exist")
    assert "File exists" not in err and not (tmp_path / "gone").exists()


# ------------------------------------------------------------------------------------ recorded paths
@pytest.mark.parametrize("home", ["/", "", "home"])
def test_record_writes_the_home_folder_as_tilde_only_where_a_path_starts_with_it(tmp_path, capsys, monkeypatch,
                                                                                finished_run, home):
    """With ``HOME=/`` (or empty) every '/' of the recorded configs, metrics and tables became '~'.
    Now only a path that starts with the home folder, as a whole component, is rewritten."""
    home = str(tmp_path / "ann") if home == "home" else home
    monkeypatch.setenv("HOME", home)
    elsewhere = f"{tmp_path}/ann2/data"  # shares the home folder's text, not its folder
    cfg = C.resolve({}, [f"data_root={tmp_path}/ann/data", f"cache_dir={elsewhere}"])
    out = tmp_path / "out"
    run = finished_run(out / "arms" / "poisonedencoder" / "seed_0", cfg)
    (run / "metrics.json").write_text(json.dumps({"encoders": {"clean": "/opt/cache/encoders/k/encoder.pt"}}))
    rc, err = _cli(capsys, "claims", "--out", out, "--record", tmp_path / "rec")
    assert rc == 0, err
    rec = tmp_path / "rec" / "arms" / "poisonedencoder" / "seed_0"
    text, metrics = (rec / "config.yaml").read_text(), json.loads((rec / "metrics.json").read_text())
    assert metrics == {"encoders": {"clean": "/opt/cache/encoders/k/encoder.pt"}}
    assert f"cache_dir: {elsewhere}\n" in text
    data_root = "~/data" if home.startswith(str(tmp_path)) else f"{tmp_path}/ann/data"
    assert f"data_root: {data_root}\n" in text and text.count("~") == (1 if data_root.startswith("~") else 0)


# ------------------------------------------------------------------------------------ a broken dataset folder
def _claims_recipe(tmp_path) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump({"preset": "demo", "seeds": [0], "tasks": [{"dataset": "digits", "num_targets": 2}],
                                 "attack": {"poisoning_rate": 0.06, "num_references": 30}, "pretrain": {"epochs": 1},
                                 "downstream": {"epochs": 2}}))
    return p


@pytest.mark.parametrize("layout", ["empty", "train without test", "a class without images"])
def test_a_broken_dataset_folder_is_not_measurable_here_like_a_missing_one(tmp_path, capsys, layout):
    """An empty ``facemask/`` under the data root stopped the whole ``claims`` command when the
    clean encoder read it. Like a missing dataset, it is now found out from the listing before any
    run: its arms cannot run here (``--list``, and a full run skips them with that line), asked for
    by name they are one line and exit 2, and the table's rows say "not measurable here"."""
    from poisonedencoder.cli import main
    from poisonedencoder.data.datasets import missing

    root = tmp_path / "data"
    (root / "facemask").mkdir(parents=True)
    if layout == "train without test":
        (root / "facemask" / "train" / "mask").mkdir(parents=True)
    elif layout == "a class without images":
        (root / "facemask" / "mask").mkdir()
        (root / "facemask" / "mask" / "notes.txt").write_text("")
    why = missing("facemask", root)
    assert why and why.startswith(("dataset facemask not found", "facemask: class folder")) and "\n" not in why
    out = tmp_path / "c"
    argv = [str(a) for a in ("claims", _claims_recipe(tmp_path), "--out", out, "--cache-dir", tmp_path / "cache",
                             "--data-root", root)]
    assert main([*argv, "--list"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("facemask_")]
    assert len(listed) == 2 and all(f"(cannot run here: {why})" in line for line in listed)
    rc, err = _cli(capsys, *argv, "--only", "facemask_16px")
    _one_line_error(rc, err, f"claims arm facemask_16px: {why}")
    assert not (out / "arms").exists()
    out.mkdir(exist_ok=True)
    assert main([*argv, "--table"]) == 0
    table = capsys.readouterr().out
    assert "[not measurable here] facemask_16px" in table and "[not measurable here] facemask_32px" in table


def test_a_run_that_fails_does_not_stop_the_list_one_at_a_time(tmp_path, monkeypatch):
    """``run_units`` with one job: a unit whose data error is found only while it runs fails alone,
    as a worker's does with several jobs, and the caller still writes its table."""
    from poisonedencoder.studies import parallel
    from poisonedencoder.core.errors import UserError

    cfg = C.resolve({"preset": "demo"})
    ran: list[Path] = []

    def work(u, _threads, _log):
        if u.out.name == "bad":
            raise UserError("facemask: class folder x holds no images")
        ran.append(u.out)

    monkeypatch.setattr(parallel, "_work", work)
    res = parallel.run_units([(cfg, tmp_path / "bad"), (cfg, tmp_path / "good")], jobs=1, log=lambda _: None)
    assert res.failed == [(tmp_path / "bad", "facemask: class folder x holds no images")]
    assert ran == [tmp_path / "good"] and res.finished == [tmp_path / "good"]
