"""``poisonedencoder claims``: the plan, bad input, and one target per run paired with the recipe's run."""
import json
import subprocess
import sys

import pytest
import yaml

from poisonedencoder.cli import main


def _recipe(tmp_path, seeds=True, targets=2):
    cfg = {"preset": "demo", "tasks": [{"dataset": "digits", "num_targets": targets}],
           "attack": {"poisoning_rate": 0.06, "num_references": 30}, "pretrain": {"epochs": 1}, "downstream": {"epochs": 2}}
    if seeds:
        cfg["seeds"] = [0]
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_list_shows_every_arm_with_its_overrides(tmp_path, capsys):
    assert main(["claims", str(_recipe(tmp_path)), "--out", str(tmp_path / "c"), "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in out]
    assert names[:4] == ["poisonedencoder", "one_per_run", "icp", "duplication"]
    race = [n for n in names if n.startswith("race_")]
    assert names[-len(race) - 1] == "witches_brew_paper" and len(race) == 21  # the arms race after the paper's arms
    assert all(line.endswith("(group race)") for line in out if line.split()[0] in race + ["poisonedencoder"])
    assert "rate_0.005" in names and "rate_0.03" not in names  # 0.06 over 2 targets: the recipe is the 3% point
    rate = next(line for line in out if line.startswith("rate_0.01 "))
    assert "attack.poisoning_rate=0.02" in rate  # 1% per target x 2 targets per run
    assert all("not started" in line for line in out)
    # the dataset arms are planned without their data (their records are read), and say why they cannot run
    assert [n for n in names if n.endswith("px")] == ["eurosat_16px", "eurosat_32px", "facemask_16px", "facemask_32px"]
    assert all("(cannot run here: " in line for line in out if line.split()[0].endswith("px"))
    assert not any("cannot run here" in line for line in out if line.split()[0] in ("poisonedencoder", "icp"))


@pytest.mark.parametrize("args,message", [
    (["--only", "nope"], "unknown claims arm(s) nope"),
    (["--shared-datasets", "/nonexistent/x"], "is not a folder"),
    (["--jobs", "0"], "--jobs must be between 1 and 64"),
])
def test_bad_options_are_one_line(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "poisonedencoder", "claims", str(_recipe(tmp_path)), "--out",
                        str(tmp_path / "c"), "--cache-dir", str(tmp_path / "cache"), *args], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_a_recipe_without_seeds_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "poisonedencoder", "claims", str(_recipe(tmp_path, seeds=False)),
                        "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: claims needs a recipe with seeds"), r.stderr


@pytest.mark.slow
def test_one_target_per_run_reuses_the_recipes_targets_references_and_rate_per_target(tmp_path, capsys):
    out = tmp_path / "c"
    args = ["claims", str(_recipe(tmp_path)), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(args + ["--only", "poisonedencoder,one_per_run", "--jobs", "2"]) == 0  # two runs at once
    ref = json.loads((out / "arms" / "poisonedencoder" / "seed_0" / "poisons" / "manifest.json").read_text())
    singles = sorted((out / "arms" / "one_per_run" / "seed_0").glob("target_*/poisons/manifest.json"))
    assert len(singles) == 2
    assert all((f.parent.parent / "run.log").is_file() for f in singles)  # each worker's own log
    assert json.loads((out / "arms" / "poisonedencoder" / "metrics.json").read_text())["seeds"] == [0]  # pooled
    for f in singles:
        m = json.loads(f.read_text())
        (t,) = m["targets"]
        same = next(r for r in ref["targets"] if r["test_index"] == t["test_index"])
        assert t["target_class"] == same["target_class"] and t["reference_indices"] == same["reference_indices"]
        assert m["num_poisoning_inputs"] == ref["num_poisoning_inputs"] / 2  # the same budget per target input
    assert len(list((tmp_path / "cache" / "encoders").glob("*/encoder.pt"))) == 1  # one clean encoder for both arms
    table = json.loads((out / "claims.json").read_text())
    row = next(r for r in table if r["key"] == "targets_per_run")
    assert row["numbers"]["difference"]["paired_n"] == 2
    assert "1 target per run" in row["regime"]
    capsys.readouterr()
    assert main(args + ["--table"]) == 0
    table = capsys.readouterr().out
    assert "[not measured yet] targets_per_run" in table  # 2 targets: fewer than a verdict needs
    # the record: the table's evidence without encoders or images, from which the table is rebuilt ...
    rec = tmp_path / "rec"
    assert main(args + ["--record", str(rec)]) == 0
    assert not list(rec.rglob("*.pt")) and not list(rec.rglob("*.png")) and len(list(rec.rglob("metrics.json"))) == 4
    assert not any(str(out) + "/" in f.read_text() for f in rec.rglob("*") if f.is_file())  # no path of the run folder
    capsys.readouterr()
    assert main(["claims", str(_recipe(tmp_path)), "--out", str(rec), "--table"]) == 0
    assert capsys.readouterr().out == table
    # ... and, as --out, resumes without running the recorded runs again
    assert main(["claims", str(_recipe(tmp_path)), "--out", str(rec), "--cache-dir", str(tmp_path / "cache2"),
                 "--only", "poisonedencoder,one_per_run"]) == 0
    assert not (tmp_path / "cache2" / "encoders").exists() and not list(rec.rglob("*.pt"))


def test_record_writes_the_shared_datasets_folder_without_this_machines_path(tmp_path, finished_run):
    """A run's data_root inside --shared-datasets (spelled with '..', as a run from another working
    directory writes it) is recorded as <shared-datasets>/NAME; it is in no fingerprint, so the
    recorded config still resolves to the run's."""
    from poisonedencoder import config as C
    from poisonedencoder.studies.claims import SHARED, record

    shared = tmp_path / "shared" / "datasets"
    (shared / "eurosat").mkdir(parents=True)
    cfg = C.resolve({}, [f"data_root={tmp_path / 'work' / '..' / 'shared' / 'datasets' / 'eurosat'}"])
    finished_run(tmp_path / "out" / "arms" / "eurosat_16px" / "seed_0", cfg)
    assert record(tmp_path / "out", tmp_path / "rec", shared) == 1
    text = (tmp_path / "rec" / "arms" / "eurosat_16px" / "seed_0" / "config.yaml").read_text()
    assert f"data_root: {SHARED}/eurosat\n" in text and str(tmp_path) not in text
    assert text.replace(f"{SHARED}/eurosat", cfg["data_root"]) == C.dump(cfg)  # nothing else changed
    assert C.experiment_fingerprint(C.resolve(yaml.safe_load(text))) == C.experiment_fingerprint(cfg)
    record(tmp_path / "out", tmp_path / "rec2")  # without the folder: the path stays as it was
    assert cfg["data_root"] in (tmp_path / "rec2" / "arms" / "eurosat_16px" / "seed_0" / "config.yaml").read_text()
