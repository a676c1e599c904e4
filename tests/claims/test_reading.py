"""Reading the claims table: ``--table`` and ``--list`` write nothing, and a record folder rebuilds
its table on a machine without its datasets (docs/results/claims, the measured table)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from poisonedencoder.studies.claims import build_rows, not_here, plan
from poisonedencoder.studies.claims import rows as R
from poisonedencoder.cli import main

ROOT = Path(__file__).resolve().parents[2]
RECORD = ROOT / "docs" / "results" / "claims"
RECIPE = ROOT / "configs" / "digits_works.yaml"
DATASET_ROWS = ("eurosat_16px", "eurosat_32px", "facemask_16px", "facemask_32px")


def _snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder`` with its size and mtime (ns)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """This machine without Fashion-MNIST, EuroSAT or Facemask, and an empty cache and data root:
    the options that point the command there."""
    import poisonedencoder.data.datasets as D

    monkeypatch.setattr(D, "fashion_mnist_folder", lambda _root: None)  # even where Debian's package is installed
    (tmp_path / "data").mkdir()
    return ["--cache-dir", str(tmp_path / "cache"), "--data-root", str(tmp_path / "data")]


@pytest.fixture
def record_copy(tmp_path):
    """A copy of the measured table's record (the test must not touch the checkout's)."""
    out = tmp_path / "record"
    shutil.copytree(RECORD, out)
    return out


def test_the_recorded_table_rebuilds_identically_without_the_datasets(record_copy, no_data, tmp_path, capsys):
    """The record of the measured table (its EuroSAT, Facemask and two-task arms ran with their data
    on another machine) gives the same rows and verdicts here, where none of those datasets is."""
    recorded = json.loads((RECORD / "claims.json").read_text())
    assert main(["claims", str(RECIPE), "--out", str(record_copy), "--table", *no_data]) == 0
    printed, said = capsys.readouterr()
    assert said == ""  # no row differs from the recorded claims.json
    for row in recorded:  # every row's verdict and measurement, as printed
        assert f"[{row['verdict']}] {row['key']}: " in printed, row["key"]
        if row["measurement"]:
            assert f"    measured: {row['measurement']}\n" in printed, row["key"]
    measured = {r["key"]: r["verdict"] for r in recorded if r["key"] in (*DATASET_ROWS, "two_tasks")}
    assert len(measured) == 5 and R.NOT_MEASURABLE not in measured.values()  # what the regression is about
    # the files, rewritten from the record: the same bytes as recorded
    (record_copy / "claims.json").write_text("[]")
    (record_copy / "claims.md").unlink()
    assert main(["claims", str(RECIPE), "--out", str(record_copy), "--table", "--write", *no_data]) == 0
    assert json.loads((record_copy / "claims.json").read_text()) == recorded
    assert (record_copy / "claims.md").read_bytes() == (RECORD / "claims.md").read_bytes()
    assert not (tmp_path / "cache").exists()  # the recipe's size: digits decoded in memory, no cache written


def test_table_and_list_write_nothing(record_copy, no_data, tmp_path, capsys):
    (record_copy / "claims.md").write_text("stale\n")  # what --table must leave as it is
    before = _snapshot(record_copy)
    assert main(["claims", str(RECIPE), "--out", str(record_copy), "--table", *no_data]) == 0
    assert main(["claims", str(RECIPE), "--out", str(record_copy), "--list", *no_data]) == 0
    assert _snapshot(record_copy) == before and not (record_copy / "arms_race.png").exists()
    assert not (tmp_path / "cache").exists() and not any((tmp_path / "data").iterdir())
    listed = capsys.readouterr().out
    line = next(x for x in listed.splitlines() if x.startswith("eurosat_16px "))
    assert "3/3 runs finished" in line and "(cannot run here: dataset eurosat not found under" in line
    assert "data_root=" not in line  # the arm names its dataset, not a folder: the data root finds it
    # --write is the one that writes
    assert main(["claims", str(RECIPE), "--out", str(record_copy), "--table", "--write", *no_data]) == 0
    assert (record_copy / "claims.md").read_bytes() == (RECORD / "claims.md").read_bytes()


def test_a_finished_arm_is_judged_and_one_without_runs_is_not_measurable_where_its_data_are_absent():
    from test_rows import _arm  # an arm of 30 target inputs over 3 seeds

    cfg = {"attack": {"poisoning_rate": 0.3}, "tasks": [{"num_targets": 10, "targets": None}]}
    away = {"eurosat_16px": "eurosat is not on this machine", "facemask_16px": "facemask is not on this machine",
            "two_tasks": "Fashion-MNIST is not installed"}
    res = {"poisonedencoder": _arm("poisonedencoder", [1] * 27 + [0] * 3),
           "eurosat_16px": _arm("eurosat_16px", [1] * 28 + [0] * 2)}
    rows = {r.key: r for r in build_rows(cfg, res, away)}
    assert rows["eurosat_16px"].verdict == R.REPRODUCED and rows["eurosat_16px"].measurement.startswith("ASR 28/30")
    assert (rows["facemask_16px"].verdict, rows["facemask_16px"].why) == (R.NOT_MEASURABLE, "facemask is not on this machine")
    assert (rows["two_tasks"].verdict, rows["two_tasks"].why) == (R.NOT_MEASURABLE, "Fashion-MNIST is not installed")
    assert rows["eurosat_32px"].verdict == R.PENDING and rows["eurosat_32px"].why == "to run: eurosat_32px"  # runnable here
    two = {"two_tasks": _arm("two_tasks", [1] * 28 + [0] * 2)}
    assert R.two_tasks(two, away).verdict == R.REPRODUCED  # its runs are on disk: judged without Fashion-MNIST


def _gpu_recipe(tmp_path):
    """A recipe like configs/cifar10_gpu.yaml on a machine without its data or a GPU."""
    cfg = {"preset": "demo", "device": "cuda", "seeds": [0, 1, 2],
           "pretrain_data": {"dataset": f"imagefolder:{tmp_path / 'packed' / 'cifar10'}", "num_images": 5000},
           "tasks": [{"dataset": f"imagefolder:{tmp_path / 'packed' / 'cifar10'}", "num_targets": 10}],
           "attack": {"poisoning_rate": 0.3}}
    p = tmp_path / "gpu.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_reading_needs_neither_the_recipes_dataset_nor_its_device(tmp_path, no_data, capsys):
    """A GPU recipe's record is read on a CPU machine without its data: the rows do not depend on
    the train split's size, and the sizes that do (fine-tuning, crop_disagreement's budget) say '?'."""
    recipe, out = _gpu_recipe(tmp_path), tmp_path / "gpu_record"
    out.mkdir()
    assert main(["claims", str(recipe), "--out", str(out), "--table", *no_data]) == 0
    table = capsys.readouterr().out
    assert "[not measured yet] high_asr:" in table and "why: to run: poisonedencoder" in table
    assert "[not measurable here] two_tasks:" in table and "why: the recipe is not on digits" in table
    assert main(["claims", str(recipe), "--out", str(out), "--list", *no_data]) == 0
    listed = capsys.readouterr().out
    line = next(x for x in listed.splitlines() if x.startswith("defense_finetune "))
    assert "defense.finetune.num_clean=?" in line and "on ? clean inputs" in line
    assert "defense.crop_disagreement.budget=0.231" in listed  # from num_images alone: 1,500 of 6,500 inputs
    assert "(?: a size that follows from the train split" in listed
    assert not any(out.iterdir())


def test_the_size_of_a_cached_dataset_is_read_from_its_cache_alone(tmp_path):
    from poisonedencoder.data.datasets import cached_train_size, load_dataset

    cache = tmp_path / "cache"
    assert cached_train_size("digits", 16, None, cache) is None and not cache.exists()
    n = len(load_dataset("digits", 16, None, cache, progress=False).train)
    assert cached_train_size("digits", 16, None, cache) == n == 1347
    assert cached_train_size("digits", 8, None, cache) is None  # another size: another cache file
    assert cached_train_size(f"imagefolder:{tmp_path / 'nowhere'}", 16, None, cache) is None


def test_dataset_arms_are_planned_without_their_data_and_refused_by_name(tmp_path, no_data, capsys):
    """Planned always (their records are read); runnable only where their dataset is under the data
    root; named with --only without it: the dataset's one-line error (a whole table skips them)."""
    from poisonedencoder import config as C
    from poisonedencoder.studies.claims.arms import missing_data

    args = ["claims", str(RECIPE), "--out", str(tmp_path / "c"), "--only", "eurosat_16px,icp", *no_data]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: claims arm eurosat_16px: dataset eurosat not found under ") and len(err.splitlines()) == 1
    assert not (tmp_path / "c" / "arms").exists()  # refused before anything ran
    root = tmp_path / "data"
    for split in ("train", "test"):  # facemask only (a file named as an image in its class folder: its listing)
        (root / "facemask" / split / "WithMask").mkdir(parents=True)
        (root / "facemask" / split / "WithMask" / "0.png").write_bytes(b"")
    cfg = C.resolve(yaml.safe_load(RECIPE.read_text()), [f"data_root={json.dumps(str(root))}"])
    arms = {a.name: a for a in plan(cfg, num_train=1347)}
    assert set(DATASET_ROWS) <= set(arms)
    assert missing_data(arms["facemask_32px"], cfg) is None
    assert missing_data(arms["eurosat_32px"], cfg).startswith("dataset eurosat not found under")
    assert set(not_here(cfg, list(arms.values()))) & set(DATASET_ROWS) == {"eurosat_16px", "eurosat_32px"}


@pytest.mark.parametrize("args,message", [
    (["--write"], "--write goes with --table"),
    (["--table", "--list"], "--list and --table exclude each other"),
    (["--table", "--record", "x"], "--table and --record exclude each other"),
    (["--table"], "is not a folder: no claims runs to read there"),
    (["--table", "--write"], "is not a folder: no claims runs to read there"),
    (["--record", "x"], "is not a folder: no claims runs to read there"),
])
def test_bad_reading_options_are_one_line(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "poisonedencoder", "claims", str(RECIPE), "--out", str(tmp_path / "none"),
                        "--cache-dir", str(tmp_path / "cache"), *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not (tmp_path / "none").exists() and not (tmp_path / "x").exists()


def test_table_says_which_rows_differ_from_the_folders_claims_json(record_copy, no_data, capsys):
    """A folder whose table was kept without its runs' records (or was written by other code): the
    rebuilt rows are printed, and one line on standard error names the rows that differ."""
    shutil.rmtree(record_copy / "arms" / "icp")
    shutil.rmtree(record_copy / "arms" / "eurosat_32px")
    assert main(["claims", str(RECIPE), "--out", str(record_copy), "--table", *no_data]) == 0
    printed, said = capsys.readouterr()
    assert "[not measured yet] vs_icp:" in printed and "[not measurable here] eurosat_32px:" in printed
    assert said.startswith("note: 2 row(s) differ from ") and "(vs_icp, eurosat_32px)" in said
    assert len(said.splitlines()) == 1
    assert main(["claims", str(RECIPE), "--out", str(record_copy), "--table", "--write", *no_data]) == 0
    assert capsys.readouterr().err.rstrip().endswith("; rewritten")
    assert main(["claims", str(RECIPE), "--out", str(record_copy), "--table", *no_data]) == 0
    assert capsys.readouterr().err == ""  # the file now holds what the runs give


def test_write_refuses_a_folder_the_toolkit_did_not_make(tmp_path, no_data, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.md").write_text("my own notes\n")
    assert main(["claims", str(RECIPE), "--out", str(out), "--table", *no_data]) == 0  # reading it is harmless
    assert main(["claims", str(RECIPE), "--out", str(out), "--table", "--write", *no_data]) == 2
    assert "is not empty (notes.md) and holds no run of this toolkit" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.md"] and (out / "notes.md").read_text() == "my own notes\n"


def test_the_claims_page_shows_the_recorded_table():
    """docs/CLAIMS.md's table and race grid are the recorded claims.md's (which the test above
    rebuilds from the records): a change of the rules or the records shows on the page."""
    import re

    page = (ROOT / "docs" / "CLAIMS.md").read_text()
    recorded = (ROOT / "docs" / "results" / "claims" / "claims.md").read_text()
    table = re.search(r"<!-- claims:begin -->\n(.*?)<!-- claims:end -->", page, re.S).group(1)
    assert table == recorded.split("\n## Beyond the paper")[0].rstrip("\n") + "\n"
    grid = re.search(r"<!-- race:begin -->\n(.*?)<!-- race:end -->", page, re.S).group(1)
    assert grid.startswith("| attacker \\ defense |") and grid in recorded


@pytest.mark.parametrize("command,default", [("claims", "runs/claims"), ("demo", "runs/demo"),
                                             ("run", "runs/<config name>")])
def test_help_gives_each_commands_own_out_default(command, default):
    from poisonedencoder.cli.parser import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    out = next(a for a in sub._actions if a.dest == "out")
    assert out.help == f"run directory (default: {default})"
