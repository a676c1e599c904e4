"""The data root is one setting: ``--data-root`` (every command), the config's ``data_root``, the
environment variable POISONEDENCODER_DATA, else ``~/.cache/poisonedencoder/data``, in that order.
Every dataset read from files is found under it, and one that is not there is a one-line error
that says where to get it.

Each way of setting it is checked by a command that reads the data: the root it must use holds a
good CIFAR-10 image folder, every other root a broken one (train and test classes differ) that
fails the command if it is read instead."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from poisonedencoder import config as C
from poisonedencoder.cli import main
from poisonedencoder.data import base
from poisonedencoder.data.location import ENV, GET, data_root

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _cifar10_folder(root: Path, good: bool = True) -> Path:
    """``root/cifar10/{train,test}/<class>/*.png``: 2 classes, 12 train and 4 test inputs each; a
    broken copy has other classes in test/ than in train/ (reading it is an error)."""
    for split, n in (("train", 12), ("test", 4)):
        for ci, c in enumerate(("ant", "bee") if good or split == "train" else ("cow", "dog")):
            for i in range(n):
                _png(root / "cifar10" / split / c / f"{i}.png", 100 * ci + 5 * i)
    return root


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Data roots named flag, config, env and default (the default one patched in), each empty."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(base, "DEFAULT_DATA_ROOT", tmp_path / "default")
    monkeypatch.chdir(tmp_path)
    return {k: tmp_path / k for k in ("flag", "config", "env", "default")}


def _craft(tmp_path, roots: dict, good: str, given: tuple[str, ...], monkeypatch, capsys) -> tuple[int, str]:
    """``craft`` on cifar10-folder with the data root given the ways in ``given`` (flag, config, env;
    the default is always there); the root ``good`` holds a good folder, the others a broken one."""
    for name, root in roots.items():
        _cifar10_folder(root, good=name == good)
    user = {"preset": "demo", "pretrain_data": {"dataset": "cifar10-folder"},
            "tasks": [{"dataset": "cifar10-folder", "num_targets": 1}],
            "attack": {"num_references": 2, "poisoning_rate": 0.2}}
    if "config" in given:
        user["data_root"] = "config"  # relative to the config file's folder
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(user))
    if "env" in given:
        monkeypatch.setenv(ENV, str(roots["env"]))
    args = ["craft", str(cfg), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]
    if "flag" in given:
        args += ["--data-root", str(roots["flag"])]
    capsys.readouterr()
    rc = main(args)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("given,winner", [
    (("flag",), "flag"),                       # the flag is read (not the default)
    (("config",), "config"),                   # the config key is read
    (("env",), "env"),                         # the environment variable is read
    ((), "default"),                           # none set: the default
    (("flag", "config", "env"), "flag"),       # flag > config
    (("config", "env"), "config"),             # config > environment variable
], ids=["flag", "config", "env", "default", "flag-over-config", "config-over-env"])
def test_each_way_of_setting_the_data_root_and_their_precedence(tmp_path, roots, monkeypatch, capsys, given, winner):
    rc, err = _craft(tmp_path, roots, winner, given, monkeypatch, capsys)
    assert rc == 0, err
    manifest = yaml.safe_load((tmp_path / "run" / "poisons" / "manifest.json").read_text())
    assert manifest["targets"][0]["dataset"] == "cifar10-folder"


@pytest.mark.parametrize("given,read", [(("flag", "config"), "flag"), (("config", "env"), "config"),
                                        (("env",), "env")])
def test_the_chosen_root_is_the_one_read(tmp_path, roots, monkeypatch, capsys, given, read):
    """The reverse: the chosen root holds the broken copy and a lower one the good one: the command
    fails on the chosen root's files."""
    lower = {"flag": "config", "config": "env", "env": "default"}[read]
    rc, err = _craft(tmp_path, roots, lower, given, monkeypatch, capsys)
    assert rc == 2 and f"{roots[read] / 'cifar10' / 'train'} has classes ['ant', 'bee']" in err, err


def test_default_is_under_the_cache_and_env_var_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert base.DEFAULT_DATA_ROOT == base.DEFAULT_CACHE / "data"
    assert data_root() == base.DEFAULT_DATA_ROOT and data_root("") == base.DEFAULT_DATA_ROOT
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, "d")
    assert data_root() == tmp_path / "d" and data_root("x") == tmp_path / "x"
    monkeypatch.setenv(ENV, "")  # set but empty: not set
    assert data_root() == base.DEFAULT_DATA_ROOT


@pytest.mark.parametrize("command", ["demo", "run", "craft", "pretrain", "evaluate", "sweep", "claims"])
def test_every_command_takes_data_root(tmp_path, monkeypatch, command):
    from poisonedencoder.cli import _resolve, build_parser

    monkeypatch.chdir(tmp_path)
    args = [command] + ([] if command == "demo" else [str(ROOT / "configs" / "digits_demo.yaml")])
    args += ["--param", "seed", "--values", "0"] if command == "sweep" else []
    cfg, _ = _resolve(build_parser().parse_args(args + ["--data-root", "d"]))
    assert cfg["data_root"] == str(tmp_path / "d")


def test_the_data_root_is_in_no_fingerprint(tmp_path, monkeypatch):
    a = C.resolve({"preset": "demo"}, [f"data_root={tmp_path / 'a'}"])
    monkeypatch.setenv(ENV, str(tmp_path / "b"))
    b = C.resolve({"preset": "demo"})
    assert b["data_root"] is None  # the environment variable is read where the data are, not written into configs
    assert C.experiment_fingerprint(a) == C.experiment_fingerprint(b) and C.clean_encoder_key(a) == C.clean_encoder_key(b)


# --------------------------------------------------------------------------- missing: one line, how to get it
def _recipe(tmp_path, dataset: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"preset": "demo", "pretrain_data": {"dataset": dataset}}))
    return p


def test_missing_dataset_is_one_line_that_says_how_to_get_it(tmp_path):
    """In a fresh interpreter: exit status 2, one line on stderr, no traceback, where to get it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([sys.executable, "-m", "poisonedencoder", "craft", str(_recipe(tmp_path, "eurosat")),
                        "--data-root", str(empty), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"error: dataset eurosat not found under {empty} (no eurosat/2750/")
    assert "set --data-root or POISONEDENCODER_DATA); get it: " in r.stderr
    assert "https://github.com/phelber/EuroSAT" in r.stderr and "expected layout: <data_root>/eurosat/2750/<class>/*.jpg" in r.stderr


@pytest.mark.parametrize("name", ["eurosat", "facemask", "stl10", "tiny-imagenet", "cifar10-folder"])
def test_every_dataset_read_from_files_says_where_to_get_it(tmp_path, monkeypatch, capsys, name):
    monkeypatch.setenv(ENV, str(tmp_path / "empty"))  # found through the environment variable alone
    rc = main(["craft", str(_recipe(tmp_path, name)), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: dataset {name} not found under {tmp_path / 'empty'} (no ")
    assert f"; get it: {GET[name]}; expected layout: <data_root>/" in err


def test_no_shipped_file_names_a_folder_beside_the_checkout():
    """Configs, scripts, benchmarks and the reference pages find the data through the data root."""
    files = [p for d in ("configs", "scripts", "benchmarks", "examples") for p in (ROOT / d).rglob("*") if p.is_file()]
    files += [*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    assert len(files) > 20
    offending = [str(p.relative_to(ROOT)) for p in files if "shared/datasets" in p.read_text(errors="replace")]
    assert not offending


# --------------------------------------------------------------------------- claims: EuroSAT and Facemask
def _claims_recipe(tmp_path) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump({"preset": "demo", "seeds": [0], "tasks": [{"dataset": "digits", "num_targets": 2}],
                                 "attack": {"poisoning_rate": 0.06, "num_references": 30}}))
    return p


def _paper_datasets(root: Path) -> Path:
    """EuroSAT's and Facemask's layouts, a file named as an image in each class folder (what their
    listing checks; nothing here decodes them)."""
    for folder in ("eurosat/2750/Forest", "facemask/train/WithMask", "facemask/test/WithMask"):
        (root / folder).mkdir(parents=True)
        (root / folder / "0.png").write_bytes(b"")
    return root


def _listed(tmp_path, capsys, *extra) -> tuple[int, list[str], str]:
    capsys.readouterr()
    rc = main(["claims", str(_claims_recipe(tmp_path)), "--out", str(tmp_path / "c"), "--cache-dir",
               str(tmp_path / "cache"), "--list", *extra])
    out, err = capsys.readouterr()
    return rc, [line.split()[0] for line in out.splitlines()
                if line.split()[0].endswith("px") and "cannot run here" not in line], err


DATASET_ARMS = ["eurosat_16px", "eurosat_32px", "facemask_16px", "facemask_32px"]


@pytest.mark.usefixtures("roots")
@pytest.mark.parametrize("how", ["flag", "env", "shared-datasets"])
def test_claims_finds_eurosat_and_facemask_under_the_data_root(tmp_path, monkeypatch, capsys, how):
    root = _paper_datasets(tmp_path / "data")
    assert _listed(tmp_path, capsys)[1] == []  # not under the (empty) default data root: cannot run here
    if how == "env":
        monkeypatch.setenv(ENV, str(root))
    extra = {"flag": ["--data-root", str(root)], "env": [], "shared-datasets": ["--shared-datasets", str(root)]}[how]
    rc, arms, err = _listed(tmp_path, capsys, *extra)
    assert rc == 0 and arms == DATASET_ARMS, err
    assert ("--shared-datasets is the former name of --data-root" in err) == (how == "shared-datasets")


@pytest.mark.usefixtures("roots")
def test_claims_arms_of_a_missing_dataset_say_where_to_get_it(tmp_path, capsys):
    _paper_datasets(tmp_path / "data")
    rc = main(["claims", str(_claims_recipe(tmp_path)), "--out", str(tmp_path / "c"), "--cache-dir",
               str(tmp_path / "cache"), "--only", "facemask_16px", "--data-root", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: claims arm facemask_16px: dataset facemask not found under {tmp_path / 'empty'}")
    assert GET["facemask"] in err


@pytest.mark.usefixtures("roots")
def test_claims_lists_dataset_arms_without_the_dataset_and_says_why_they_cannot_run(tmp_path, capsys):
    """The dataset arms are in the plan on a machine without the data (so a record's runs are read),
    each saying why it cannot run here, with the dataset's one-line error."""
    (tmp_path / "c" / "arms" / "eurosat_16px").mkdir(parents=True)
    capsys.readouterr()
    rc = main(["claims", str(_claims_recipe(tmp_path)), "--out", str(tmp_path / "c"), "--cache-dir",
               str(tmp_path / "cache"), "--list"])
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert rc == 0 and all(name in lines for name in DATASET_ARMS)
    assert all("(cannot run here: dataset " in lines[name] and "get it:" in lines[name] for name in DATASET_ARMS)


@pytest.mark.usefixtures("roots")
def test_shared_datasets_and_a_different_data_root_are_refused(tmp_path, capsys):
    root = _paper_datasets(tmp_path / "data")
    rc, _, err = _listed(tmp_path, capsys, "--shared-datasets", str(root), "--data-root", str(tmp_path / "other"))
    assert rc == 2 and err == "error: --shared-datasets is the former name of --data-root: give one of them\n"
    rc, arms, _ = _listed(tmp_path, capsys, "--shared-datasets", str(root), "--data-root", str(root))
    assert rc == 0 and arms == DATASET_ARMS  # the same folder twice: accepted


@pytest.mark.usefixtures("roots")
@pytest.mark.parametrize("how", ["flag", "env"])
def test_claims_record_writes_the_data_root_as_the_placeholder(tmp_path, monkeypatch, how, finished_run):
    """--record turns a run's data_root inside the data root (here: the former arms' data_root
    <root>/eurosat) into <shared-datasets>/eurosat, the placeholder the records carry."""
    from poisonedencoder.studies.claims import SHARED

    root = _paper_datasets(tmp_path / "data")
    finished_run(tmp_path / "c" / "arms" / "eurosat_16px" / "seed_0", C.resolve({}, [f"data_root={root / 'eurosat'}"]))
    extra = ["--data-root", str(root)] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv(ENV, str(root))
    assert main(["claims", str(_claims_recipe(tmp_path)), "--out", str(tmp_path / "c"), "--record",
                 str(tmp_path / "rec"), *extra]) == 0
    text = (tmp_path / "rec" / "arms" / "eurosat_16px" / "seed_0" / "config.yaml").read_text()
    assert f"data_root: {SHARED}/eurosat\n" in text and str(tmp_path) not in text


# --------------------------------------------------------------------------- scripts/pack_cifar10.py
def _pack():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pack_cifar10", ROOT / "scripts" / "pack_cifar10.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.usefixtures("roots")
@pytest.mark.parametrize("how", ["flag", "env"])
def test_pack_reads_cifar10_from_the_data_root(tmp_path, monkeypatch, how):
    _cifar10_folder(tmp_path / "data")
    if how == "env":
        monkeypatch.setenv(ENV, str(tmp_path / "data"))
    extra = ["--data-root", str(tmp_path / "data")] if how == "flag" else []
    assert _pack().main(["--out", str(tmp_path / "p"), "--train-per-class", "2", "--test-per-class", "1", *extra]) == 0
    assert sorted(f.name for f in (tmp_path / "p" / "train" / "bee").iterdir()) == ["0.png", "1.png"]
    with pytest.raises(SystemExit, match=r"empty/cifar10/train does not exist; .*--data-root or POISONEDENCODER_DATA"):
        _pack().main(["--out", str(tmp_path / "q"), "--data-root", str(tmp_path / "empty")])


# --------------------------------------------------------------------------- benchmarks/augmentation_equality.py
@pytest.mark.usefixtures("roots")
def test_augmentation_equality_reads_the_data_root(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("augmentation_equality", ROOT / "benchmarks" / "augmentation_equality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--data-root", str(tmp_path / "given"), "--seeds", "0", "--cache-dir", str(tmp_path / "cache"),
                     "--out", str(tmp_path / "eq")]) == 2  # the default dataset, cifar10-folder, is not there
    err = capsys.readouterr().err
    assert err.startswith(f"error: dataset cifar10-folder not found under {tmp_path / 'given'} (no cifar10/train/"), err
