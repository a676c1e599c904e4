"""Runs as cluster jobs through submitit (``--slurm``, ``--submitit-local``): the same numbers as
in-process, every run a job with its logs, resumable, failures with their reason, and the
options' one-line errors. The jobs run through submitit's local executor (no Slurm here)."""
import csv
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from poisonedencoder import config as C
from poisonedencoder.cli import main
from poisonedencoder.core.errors import UserError

submitit = pytest.importorskip("submitit")

from poisonedencoder.studies.cluster import Cluster, job_line  # noqa: E402
from poisonedencoder.studies.parallel import Unit, run_units  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "pretrain.epochs=1", "--set", "pretrain_data.num_images=300", "--set", "pretrain.width=8",
        "--set", "downstream.epochs=2", "--set", "attack.num_references=5", "--set", "pretrain.threads=1"]


def _sweep(out, cache, *extra):
    return main(["sweep", str(ROOT / "configs" / "digits_demo.yaml"), "--seeds", "0", "--out", str(out),
                 "--cache-dir", str(cache), "--param", "attack.poisoning_rate", "--values", "0.05,0.2", *FAST, *extra])


def _rows(out):
    with open(out / "sweep.csv") as f:
        return list(csv.DictReader(f))


def _job_dirs(folder: Path) -> set[str]:
    return {d.name for d in folder.iterdir() if d.is_dir() and d.name != "%j"}  # %j: the local executor's template


def test_a_sweep_as_jobs_gives_the_in_process_numbers_each_run_a_job_and_resumes(tmp_path, capsys):
    assert _sweep(tmp_path / "here", tmp_path / "cache_here") == 0
    local = ["--submitit-local", "--slurm-cpus", "1", "--slurm-time", "10"]
    out = tmp_path / "jobs"
    assert _sweep(out, tmp_path / "cache_jobs", *local) == 0
    assert _rows(out) == _rows(tmp_path / "here")  # every column: the same numbers
    printed = capsys.readouterr().out
    assert "sweep (clean encoders): 1 job(s) submitted: local" in printed and "sweep: 2 job(s) submitted" in printed
    # the clean encoder both values share was one job, trained once; each run was a job of its own
    assert len(list((tmp_path / "cache_jobs" / "encoders").glob("*/encoder.pt"))) == 1
    folder = out / "slurm"  # the default --slurm-folder
    jobs = _job_dirs(folder)
    assert len(jobs) == 3
    runs = [out / f"attack.poisoning_rate={v}" / "seed_0" for v in ("0.05", "0.2")]
    logs = [runs[0] / "clean.log"] + [r / "run.log" for r in runs]
    ids = []
    for log in logs:
        first = log.read_text().splitlines()[0]
        assert first.startswith("submitit job ")
        ids.append(first.split()[2])
    assert set(ids) == jobs
    for i, log in zip(ids, logs, strict=True):  # the job's standard output holds what its run logged
        assert log.read_text().splitlines()[-1] in (folder / i / f"{i}_0_log.out").read_text()
    # the same command again: every run finished before, no job submitted, the same table
    assert _sweep(out, tmp_path / "cache_jobs", *local) == 0
    assert "sweep: 2 of 2 finished before; 0 to run" in capsys.readouterr().out
    assert _job_dirs(folder) == jobs
    assert _rows(out) == _rows(tmp_path / "here")


def test_a_failing_job_is_reported_with_its_reason(tmp_path, capsys):
    cfg = C.resolve({"preset": "demo", "cache_dir": str(tmp_path / "cache")},
                    ["pretrain.batch_size=5000", "pretrain.threads=1"])  # valid, but larger than digits' 1,347 inputs
    unit = Unit(cfg, tmp_path / "bad")
    res = run_units([unit], log=print, executor=Cluster("local", tmp_path / "jobs", cpus_per_job=1, timeout_min=5))
    why = "error: pretrain.batch_size 5000 is larger than the pre-training set (1347 inputs)"
    assert res.failed == [(tmp_path / "bad", why)] and not res.finished
    (job,) = _job_dirs(tmp_path / "jobs")
    assert "Traceback" in (tmp_path / "jobs" / job / f"{job}_0_log.err").read_text()  # the job's whole story
    assert job_line(job) in (tmp_path / "bad" / "run.log").read_text()
    out = capsys.readouterr().out
    assert f"run failed (job {job}, {tmp_path / 'bad'}): {why}" in out and "Traceback" not in out
    # through the command line (one run, one job): one line, exit 2
    r = main(["run", str(ROOT / "configs" / "digits_demo.yaml"), "--set", "seeds=null", "--out", str(tmp_path / "one"),
              "--cache-dir", str(tmp_path / "cache"), "--set", "pretrain.batch_size=5000", "--submitit-local",
              "--slurm-cpus", "1", *FAST])
    err = capsys.readouterr().err
    assert r == 2 and len(err.splitlines()) == 1 and "larger than the pre-training set" in err, err


def test_the_claims_table_from_jobs(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"preset": "demo", "seeds": [0], "tasks": [{"dataset": "digits", "num_targets": 2}],
                                      "attack": {"poisoning_rate": 0.06, "num_references": 30},
                                      "pretrain": {"epochs": 1, "threads": 1}, "downstream": {"epochs": 2}}))
    out = tmp_path / "c"
    assert main(["claims", str(recipe), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--only",
                 "poisonedencoder", "--submitit-local", "--slurm-cpus", "1"]) == 0
    printed = capsys.readouterr().out
    assert "claims clean encoders: 1 job(s) submitted" in printed and "claims: 1 job(s) submitted" in printed
    run = out / "arms" / "poisonedencoder" / "seed_0"
    assert (run / "run.log").read_text().startswith("submitit job ") and (run / "clean.log").is_file()
    assert len(_job_dirs(out / "slurm")) == 2
    assert C.load_yaml(out / "arms" / "poisonedencoder" / "config.yaml")["seeds"] == [0]
    assert json.loads((out / "arms" / "poisonedencoder" / "metrics.json").read_text())["seeds"] == [0]  # pooled
    assert (out / "claims.json").is_file() and (out / "claims.md").is_file()


@pytest.mark.parametrize("args,message", [
    (["--submitit-local", "--parallel", "2"], "--submitit-local makes every run a job of its own; --parallel N"),
    (["--slurm-gpus", "1"], "--slurm-gpus needs --slurm PARTITION (or --submitit-local)"),
    (["--slurm", "gpu", "--submitit-local"], "--slurm and --submitit-local exclude each other"),
    (["--submitit-local", "--slurm-mem", "8"], "--slurm-mem (mem_gb) is a Slurm setting"),
    (["--submitit-local", "--slurm-time", "0"], "--slurm-time (timeout_min) must be in [1, 43200], got 0"),
    (["--slurm", "gpu", "--slurm-cpus", "0"], "--slurm-cpus (cpus_per_job) must be in [1, 1024], got 0"),
    (["--slurm", "gpu"], "--slurm needs Slurm's sbatch and srun on PATH"),
    (["--slurm", "gpu", "--slurm-time", "2"], "--slurm-time (timeout_min) 2 is too short: Slurm signals a job 20 s "
                                              "before its limit, up to 60 s earlier, to requeue it, which leaves it "
                                              "under 60 s to start; give --slurm-time 3 or more"),
    (["--slurm", "gpu", "--slurm-time", "4", "--slurm-signal-delay", "150"],
     "--slurm-time (timeout_min) 4 is too short: Slurm signals a job 150 s before its limit, up to 60 s earlier, to "
     "requeue it, which leaves it under 60 s to start; give --slurm-time 5 or more or a smaller --slurm-signal-delay"),
    (["--slurm", "gpu", "--slurm-signal-delay", "5"], "--slurm-signal-delay (signal_delay_s) must be in [20, 3600]"),
    (["--submitit-local", "--slurm-signal-delay", "30"], "--slurm-signal-delay (signal_delay_s) is a Slurm setting"),
    (["--submitit-local", "--device", "cuda", "--slurm-gpus", "0"], "device cuda needs a GPU per job"),
    (["--submitit-local", "--slurm-gpus", "1"], "--slurm-gpus 1 with device cpu"),
])
def test_bad_cluster_options_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    r = main(["sweep", str(ROOT / "configs" / "digits_demo.yaml"), "--out", str(tmp_path / "sw"), "--cache-dir",
              str(tmp_path / "cache"), "--param", "attack.poisoning_rate", "--values", "0.1", *args])
    err = capsys.readouterr().err
    assert r == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "sw").exists()  # found before any work: nothing made, nothing submitted


def test_claims_refuses_a_budget_and_jobs_with_a_cluster(tmp_path, capsys):
    recipe = ROOT / "configs" / "digits_demo.yaml"
    for extra, message in ((["--budget", "60"], "a job's bound is its time limit (--slurm-time MIN), not --budget"),
                           (["--jobs", "2"], "--jobs N runs them on this machine")):
        assert main(["claims", str(recipe), "--out", str(tmp_path / "c"), "--submitit-local", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1, err


def test_slurm_settings_reach_the_sbatch_script(tmp_path, monkeypatch):
    """What Slurm receives, as submitit writes it (sbatch and srun are only looked up, never run)."""
    from submitit.slurm.slurm import _make_sbatch_string

    for name in ("sbatch", "srun"):
        (tmp_path / name).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    c = Cluster("slurm", tmp_path / "jobs", partition="gpu", gpus_per_job=1, cpus_per_job=8, timeout_min=90, mem_gb=32,
                array_parallelism=4)
    ex = c.executor()
    script = _make_sbatch_string(command="run", folder=ex.folder, map_count=10, **ex._executor.parameters)
    lines = set(script.splitlines())
    for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--time=90", "--mem=32GB",
                 "--array=0-9%4", "--job-name=poisonedencoder", "--signal=USR2@90", "--ntasks-per-node=1"):
        assert f"#SBATCH {line}" in lines, script
    assert f"#SBATCH --output={tmp_path / 'jobs'}/%A_%a/%A_%a_0_log.out" in lines
    # a short limit: the requeue signal comes early enough to requeue, late enough to leave a job a minute
    for minutes, given, delay in ((3, None, 60), (4, None, 90), (240, None, 90), (3, 30, 30)):
        ex = Cluster("slurm", tmp_path / "jobs", timeout_min=minutes, signal_delay_s=given).executor()
        script = _make_sbatch_string(command="run", folder=ex.folder, **ex._executor.parameters).splitlines()
        assert f"#SBATCH --signal=USR2@{delay}" in script and f"#SBATCH --time={minutes}" in script
    no_defaults = Cluster("slurm", tmp_path / "jobs").executor()._executor.parameters
    assert "partition" not in no_defaults and "mem" not in no_defaults  # the cluster's own defaults


def test_without_submitit_the_error_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed: import fails
    with pytest.raises(UserError, match=r"pip install 'poisonedencoder\[cluster\]'"):
        Cluster("local", tmp_path).executor()
    assert main(["sweep", str(ROOT / "configs" / "digits_demo.yaml"), "--out", str(tmp_path / "sw"), "--param",
                 "attack.poisoning_rate", "--values", "0.1", "--submitit-local"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'poisonedencoder[cluster]'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "sw").exists()  # before any work


def _fake_slurm(tmp_path, monkeypatch, sinfo: str) -> None:
    """sbatch and srun that are only looked up, and an sinfo that prints ``sinfo``."""
    for name in ("sbatch", "srun"):
        (tmp_path / name).write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "sinfo").write_text(f"#!/bin/sh\nprintf '{sinfo}'\n")
    for name in ("sbatch", "srun", "sinfo"):
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_the_partition_and_its_time_limit_are_checked_before_any_work(tmp_path, monkeypatch, capsys):
    from poisonedencoder import api

    _fake_slurm(tmp_path, monkeypatch, "debug*|infinite\\nshort|30:00\\nday|1-00:00:00\\n")
    cfg = ROOT / "configs" / "digits_demo.yaml"
    assert api.cluster(cfg, tmp_path / "o", "short").timeout_min == 30  # the default, 240, within the partition's
    assert api.cluster(cfg, tmp_path / "o", "short", timeout_min=20).timeout_min == 20
    assert api.cluster(cfg, tmp_path / "o", "day").timeout_min == 240
    assert api.cluster(cfg, tmp_path / "o", "default").timeout_min == 240  # debug, no limit
    for args, message in ((["--slurm", "short", "--slurm-time", "60"], "--slurm-time (timeout_min) 60 is above "
                           "partition short's time limit of 30 min: give --slurm-time 30 or less"),
                          (["--slurm", "gpu"], "--slurm (partition) gpu: no such partition here (sinfo lists debug, "
                           "short, day)")):
        r = main(["sweep", str(cfg), "--out", str(tmp_path / "sw"), "--cache-dir", str(tmp_path / "cache"), "--param",
                  "attack.poisoning_rate", "--values", "0.1", *args])
        err = capsys.readouterr().err
        assert r == 2 and message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "sw").exists()


def test_slurm_times_are_read_as_minutes():
    from poisonedencoder.studies.cluster import parse_minutes

    for text, minutes in (("infinite", None), ("UNLIMITED", None), ("30:00", 30), ("5:30", 5), ("2:00:00", 120),
                          ("1-00:00:00", 1440), ("2-12", 2 * 1440 + 720), ("45", 45), ("junk", None), ("", None)):
        assert parse_minutes(text) == minutes, text
