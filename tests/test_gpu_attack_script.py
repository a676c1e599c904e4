"""The GPU reproduction's parts, run on the CPU with tiny settings: the packing script, the
device script (benchmarks/gpu_attack.sh) and the per-seed table with intervals."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def source_folder(tmp_path):
    """A CIFAR-like image folder: 3 classes, 12 train and 6 test JPEGs each, 32x32."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for split, n in (("train", 12), ("test", 6)):
        for c, color in zip(("ant", "bee", "cow"), ((200, 40, 40), (40, 200, 40), (40, 40, 200)), strict=True):
            d = src / split / c
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(color) + rng.integers(-30, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:04d}.jpg", quality=90)
    return src


def test_pack_copies_the_first_files_of_each_class_byte_for_byte(source_folder, tmp_path):
    pack = _module(ROOT / "scripts" / "pack_cifar10.py")
    out = tmp_path / "packed" / "c"
    assert pack.main(["--src", str(source_folder), "--out", str(out), "--train-per-class", "5",
                      "--test-per-class", "2"]) == 0
    for split, k in (("train", 5), ("test", 2)):
        for c in ("ant", "bee", "cow"):
            names = sorted(f.name for f in (out / split / c).iterdir())
            assert names == [f"{i:04d}.jpg" for i in range(k)]
            assert all((out / split / c / n).read_bytes() == (source_folder / split / c / n).read_bytes() for n in names)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_pack_refuses_more_images_than_a_class_holds(source_folder, tmp_path):
    pack = _module(ROOT / "scripts" / "pack_cifar10.py")
    with pytest.raises(SystemExit, match="fewer than the 13"):
        pack.main(["--src", str(source_folder), "--out", str(tmp_path / "p"), "--train-per-class", "13"])
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_gpu_attack_script_runs_two_seeds_on_the_cpu_and_pools_them(source_folder, tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), DEVICE="cpu", SEEDS="0 1", DATA=str(source_folder),
               RUNS=str(tmp_path / "runs"), CACHE=str(tmp_path / "cache"), PYTHON=sys.executable)
    tiny = ["--set", "pretrain.backbone=cnn7", "--set", "pretrain.width=4", "--set", "pretrain.epochs=2",
            "--set", "pretrain.batch_size=16", "--set", "pretrain.precision=fp32", "--set", "pretrain.snapshot_every=1",
            "--set", "tasks=[{dataset: 'imagefolder:%s', num_targets: 2}]" % source_folder,
            "--set", "attack.num_references=4", "--set", "downstream.epochs=2"]
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_attack.sh"), *tiny], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"device.txt", "log.txt", "summary.md", "summary.json",
                                               "metrics_seed0.json", "metrics_seed1.json"}
    s = json.loads((out / "summary.json").read_text())
    per_seed = [json.loads((out / f"metrics_seed{k}.json").read_text()) for k in (0, 1)]
    # the pooled ASR is the count over both seeds' target inputs, with its Wilson interval
    hits = sum(t["poisoned_prediction"] == t["target_class"] for m in per_seed for t in m["tasks"][0]["targets"])
    iv = s["intervals"]["ASR"]
    assert (iv["k"], iv["n"]) == (hits, 4)
    lo, hi = iv["ci95"]
    assert lo <= hits / 4 <= hi and hi - lo > 0.3
    assert [r["seed"] for r in s["runs"]] == s["seeds"] == [0, 1]
    assert per_seed[0]["encoders"]["clean"] != per_seed[1]["encoders"]["clean"]  # each seed its own clean encoder
    assert [o["epoch"] for o in s["runs"][0]["over_training"]] == [1, 2]
    assert all(r["seconds"]["pretrain_clean"] and r["seconds"]["craft"] is not None for r in s["runs"])
    table = (out / "summary.md").read_text()
    assert "pooled" in table and "| epoch | ASR seed 0 | ASR seed 1 |" in table


def test_gpu_attack_script_names_the_missing_data(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), DATA=str(tmp_path / "nowhere"), PYTHON=sys.executable)
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_attack.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "scripts/pack_cifar10.py" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _claims_script(source_folder, tmp_path, budget, seeds="0"):
    env = dict(os.environ, OUT=str(tmp_path / "out"), DEVICE="cpu", SEEDS=seeds, DATA=str(source_folder), JOBS="2",
               BUDGET_S=str(budget), RUNS=str(tmp_path / "runs"), CACHE=str(tmp_path / "cache"), PYTHON=sys.executable)
    tiny = ["--set", "pretrain.backbone=cnn7", "--set", "pretrain.width=4", "--set", "pretrain.epochs=2",
            "--set", "pretrain.batch_size=16", "--set", "pretrain.precision=fp32", "--set", "pretrain_data.num_images=24",
            "--set", "tasks=[{dataset: 'imagefolder:%s', num_targets: 2}]" % source_folder,
            "--set", "attack.num_references=4", "--set", "downstream.epochs=2", "--set", "pretrain.threads=1"]
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_claims.sh"), *tiny], env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_gpu_claims_script_runs_the_arms_on_the_cpu_and_writes_the_table_and_stage_times(source_folder, tmp_path):
    r = _claims_script(source_folder, tmp_path, budget=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"device.txt", "log.txt", "table.txt", "claims.md", "claims.json",
                                               "stages.csv", "run_logs.txt", "arms", ".poisonedencoder"}
    rows = {r["key"]: r for r in json.loads((out / "claims.json").read_text())}
    assert rows["high_asr"]["numbers"] and rows["vs_icp"]["numbers"] and rows["defense_large_crops"]["numbers"]
    # every finished run recorded (no encoders or images), and the table rebuilt from the record alone,
    # with no device or data named: the recipe as the script ran it, but for the extra tasks setting
    recorded = sorted(p.parent.relative_to(out).as_posix() for p in (out / "arms").glob("*/seed_*/metrics.json"))
    assert recorded == ["arms/defense_large_crops/seed_0", "arms/icp/seed_0", "arms/poisonedencoder/seed_0"]
    assert all((out / r / "config.yaml").is_file() for r in recorded) and not list(out.rglob("*.pt"))
    rebuilt = subprocess.run([sys.executable, "-m", "poisonedencoder", "claims", str(ROOT / "configs" / "cifar10_gpu.yaml"),
                              "--seeds", "0", "--set", "tasks=[{dataset: 'imagefolder:%s', num_targets: 2}]" % source_folder,
                              "--out", str(out), "--table"], capture_output=True, text=True, cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    printed = (out / "table.txt").read_text()
    assert printed.startswith(rebuilt.stdout) and printed[len(rebuilt.stdout):].startswith("table: ")
    stages = (out / "stages.csv").read_text().splitlines()
    assert stages[0] == "run,craft,pretrain_clean,pretrain_poisoned,evaluate"
    assert sorted(line.split(",")[0] for line in stages[1:-1]) == [
        "arms/defense_large_crops/seed_0", "arms/icp/seed_0", "arms/poisonedencoder/seed_0"]
    assert all(x for line in stages[1:] for x in line.split(",")[2:])  # every pre-training and evaluation timed
    assert "arms/icp/seed_0/run.log" in (out / "run_logs.txt").read_text()


@pytest.mark.slow
def test_gpu_claims_script_ends_with_a_table_when_the_budget_runs_out(source_folder, tmp_path):
    r = _claims_script(source_folder, tmp_path, budget=1)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "claims: stopped at the budget" in log or "not started" in log
    assert "runs not finished" in log and (tmp_path / "out" / "claims.json").is_file()


def test_gpu_claims_script_refuses_a_folder_of_the_users_as_out(tmp_path):
    """OUT gets the script's log, table and the record: a non-empty folder it did not mark is
    refused in one line before any work, and nothing in it is touched."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "log.txt").write_text("my log\n")
    env = {**os.environ, "OUT": str(out), "DATA": str(tmp_path / "no_data"), "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_claims.sh")], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: OUT ") and "is not empty (log.txt)" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and [p.name for p in out.iterdir()] == ["log.txt"]
    assert (out / "log.txt").read_text() == "my log\n"


def test_gpu_claims_script_runs_the_campaign_from_its_record_folder(source_folder, tmp_path):
    """CAMPAIGN set: the recipe's dataset (cifar10-folder) read under DATA's parent as the data root,
    nothing copied, and the record folder handed to `claims --campaign` (here one that does not
    exist: refused in one line by the claims command, before any run). DATA not named cifar10 is
    refused in one line before any work."""
    env = dict(os.environ, OUT=str(tmp_path / "out"), DEVICE="cpu", DATA=str(source_folder), RUNS=str(tmp_path / "runs"),
               CACHE=str(tmp_path / "cache"), PYTHON=sys.executable, CAMPAIGN=str(tmp_path / "no_record"))
    script = ["bash", str(ROOT / "benchmarks" / "gpu_claims.sh")]
    r = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr == (f"error: the campaign's recipe reads cifar10/ under the data root: DATA "
                                              f"must be a folder named cifar10, not {source_folder}\n"), r.stderr
    data = tmp_path / "data" / "cifar10"
    shutil.copytree(source_folder, data)
    r = subprocess.run(script, env={**env, "DATA": str(data)}, capture_output=True, text=True, timeout=300)
    log = (tmp_path / "out" / "log.txt").read_text()
    assert f"error: --campaign {tmp_path / 'no_record'} is not a folder" in log, log[-2000:]
    assert f"arms: the campaign queue from {tmp_path / 'no_record'};" in (tmp_path / "out" / "device.txt").read_text()
    assert not (tmp_path / "runs").exists() and r.returncode == 2 and r.stderr.startswith("error: the claims command refused")
