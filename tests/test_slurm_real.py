"""Runs as real Slurm jobs: ``--slurm`` against a running Slurm (``sbatch --array``, ``sacct`` for
the jobs' states, ``scancel``, ``scontrol requeue``), such as the one-node cluster that
``scripts/slurm/start.sh`` starts (then ``. /tmp/pe-slurm/env.sh`` before pytest). Each test
compares with the same runs in-process or reads what Slurm recorded (``sacct``, ``squeue``).

Skipped, with the reason, when no Slurm answers (``sinfo`` missing or failing, no node up, or
``sacct`` failing: without accounting every job state reads UNKNOWN). With
``POISONEDENCODER_SLURM_TESTS=required`` (set by ``.ci/run``, which starts the cluster) they fail
instead. The jobs use 1 CPU each and the tiny digits settings; the cluster's node needs 2 CPUs
for ``--slurm-max-jobs`` to have something to bound."""
from __future__ import annotations

import csv
import getpass
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

pytest.importorskip("submitit")

from poisonedencoder.cli import main  # noqa: E402
from poisonedencoder.studies.cluster import job_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = "configs/digits_demo.yaml"  # the commands as docs/CLUSTER.md shows them; run with the full path
TINY = ["--set", "pretrain.epochs=1", "--set", "pretrain_data.num_images=300", "--set", "pretrain.width=8",
        "--set", "downstream.epochs=2", "--set", "attack.num_references=5", "--set", "pretrain.threads=1"]
# long enough (40 short epochs, a checkpoint after each) to be stopped in the middle of pre-training
LONG = ["--set", "pretrain.epochs=40", "--set", "pretrain.checkpoint_every=1", "--set", "pretrain_data.num_images=600",
        "--set", "pretrain.width=8", "--set", "downstream.epochs=2", "--set", "attack.num_references=5",
        "--set", "pretrain.threads=1"]
JOBS = ["--slurm", "default", "--slurm-cpus", "1", "--slurm-time", "10"]
# the commands of docs/CLUSTER.md, less their --out and --cache-dir
SWEEP = ["sweep", DEMO, "--seeds", "0", "--param", "attack.poisoning_rate", "--values", "0.05,0.2", *TINY]
SEEDS = ["run", DEMO, "--seeds", "0,1", *TINY]
RECIPE = {"preset": "demo", "seeds": [0], "tasks": [{"dataset": "digits", "num_targets": 2}],
          "attack": {"poisoning_rate": 0.06, "num_references": 30}, "pretrain": {"epochs": 1, "threads": 1},
          "downstream": {"epochs": 2}}  # the smallest claims recipe: one arm, one seed, 2 target inputs
CLAIMS = ["claims", "recipe.yaml", "--only", "poisonedencoder"]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def _full(args: list[str], **files: Path) -> list[str]:
    """``args`` with the config's full path (and ``files``: a name -> its path)."""
    paths = {DEMO: str(ROOT / DEMO), **{k.replace("_", "."): str(v) for k, v in files.items()}}
    return [paths.get(a, a) for a in args]


def _no_slurm() -> str | None:
    """Why no Slurm can run jobs here, or None."""
    hint = "start one: sudo scripts/slurm/start.sh && . /tmp/pe-slurm/env.sh"
    for tool in ("sinfo", "sbatch", "srun", "squeue", "sacct", "scancel"):
        if shutil.which(tool) is None:
            return f"no Slurm here: {tool} is not on PATH ({hint})"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return f"no Slurm reachable: sinfo did not answer in 30 s ({hint})"
    if r.returncode != 0:
        return f"no Slurm reachable: sinfo failed: {(r.stderr.strip().splitlines() or ['?'])[-1]} ({hint})"
    if not {"idle", "mixed", "allocated"} & set(r.stdout.split()):
        return f"no Slurm node up (sinfo: {' '.join(r.stdout.split()) or 'no nodes'})"
    r = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return f"sacct fails (no accounting storage: job states would read UNKNOWN): {r.stderr.strip()[:200]}"
    return None


NO_SLURM = _no_slurm()


@pytest.fixture(scope="module")
def slurm():
    """Skip, or fail where Slurm is required (``POISONEDENCODER_SLURM_TESTS=required``)."""
    if NO_SLURM:
        if os.environ.get("POISONEDENCODER_SLURM_TESTS") == "required":
            pytest.fail(f"POISONEDENCODER_SLURM_TESTS=required, but {NO_SLURM}")
        pytest.skip(NO_SLURM)


SLURM = pytest.mark.usefixtures("slurm")


@pytest.fixture(autouse=True)
def _empty_queue(request):
    """Before a Slurm test: none of this user's jobs queued (within a minute). After it: the jobs it
    left (a test that failed half-way) cancelled, so that the next test starts from an empty queue."""
    if "slurm" not in request.fixturenames:
        yield
        return
    for _ in range(60):  # a job whose result is in may still be ending (Python exits, Slurm cleans up)
        before = _queue()
        if not before:
            break
        time.sleep(1)
    assert not before, f"jobs of this user still queued after a minute: {before}"
    yield
    for driver in DRIVERS:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    DRIVERS.clear()
    left = [x.split()[0] for x in _queue()]
    if left:
        subprocess.run(["scancel", "--signal=KILL", "--full", *left], capture_output=True)
        subprocess.run(["scancel", *left], capture_output=True)
        for _ in range(60):
            if not _queue():
                break
            time.sleep(1)


def _queue() -> list[str]:
    """This user's jobs in the queue (pending, running, completing)."""
    r = subprocess.run(["squeue", "-u", getpass.getuser(), "-h", "--array", "-o", "%i %T"], capture_output=True,
                       text=True, timeout=30, check=True)
    return r.stdout.split("\n")[:-1]


def _sacct(ids: list[str], duplicates: bool = False) -> dict[str, list[dict]]:
    """What accounting recorded of each job (several records with ``duplicates``: a requeued
    job's earlier runs); waits until every job's last record is final."""
    cmd = ["sacct", "-X", "-n", "-P", "-o", "JobID,State,Start,End", "-j", ",".join(ids)]
    for _ in range(60):
        r = subprocess.run(cmd + (["--duplicates"] if duplicates else []), capture_output=True, text=True, check=True)
        out: dict[str, list[dict]] = {}
        for line in r.stdout.splitlines():
            job, state, start, end = line.split("|")
            out.setdefault(job, []).append({"state": state.split()[0], "start": start, "end": end})
        if set(out) >= set(ids) and all(recs[-1]["state"] in FINAL for recs in out.values()):
            return out
        time.sleep(0.5)
    raise AssertionError(f"sacct has no final state for {ids}: {r.stdout}")


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _job_of(log: Path) -> str:
    """The job that ran a run, from the first line of its log."""
    first = log.read_text().splitlines()[0]
    assert first.startswith(job_line("")), first
    return first.split()[2]


def _rows(out: Path) -> list[dict]:
    with open(out / "sweep.csv") as f:
        return list(csv.DictReader(f))


def _numbers(path: Path, drop: tuple[str, ...] = ()):
    """A JSON file (metrics.json, claims.json) without its times, its encoders' paths and ``drop``."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not k.endswith("seconds") and k not in ("encoders", *drop)}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip(json.loads(path.read_text()))


def _overlap(a: dict, b: dict) -> bool:
    return _t(a["start"]) < _t(b["end"]) and _t(b["start"]) < _t(a["end"])


def _kept_before_start(cache: Path, acct: list[dict]) -> None:
    """Every clean encoder in ``cache`` was sealed (its ``entry.json`` written, the clean job's last
    write) before any of the jobs in ``acct`` started. Slurm's Start and End are whole seconds
    (truncated), and the End it records for the clean job lags its last write by the job's clean-up,
    which can reach past the next array's Start; the seal's time, truncated to the second, cannot."""
    sealed = list(cache.glob("encoders/*/entry.json"))
    assert sealed, f"no clean encoder kept in {cache}"
    last = max(int(p.stat().st_mtime) for p in sealed)
    first = min(_t(r["start"]) for r in acct)
    assert datetime.fromtimestamp(last) <= first, (datetime.fromtimestamp(last), acct)


@SLURM
def test_a_sweep_as_slurm_jobs_gives_the_in_process_numbers(tmp_path, capsys):
    sweep = _full(SWEEP)
    assert main([*sweep, "--out", str(tmp_path / "here"), "--cache-dir", str(tmp_path / "cache_here")]) == 0
    out = tmp_path / "jobs"
    assert main([*sweep, "--out", str(out), "--cache-dir", str(tmp_path / "cache_jobs"), *JOBS]) == 0
    assert _rows(out) == _rows(tmp_path / "here")  # every column: the same numbers
    printed = capsys.readouterr().out
    assert "sweep (clean encoders): 1 job(s) submitted: slurm (partition (default), 0 GPU, 1 CPU, 10 min" in printed
    runs = [out / f"attack.poisoning_rate={v}" / "seed_0" for v in ("0.05", "0.2")]
    clean, *array = [_job_of(runs[0] / "clean.log")] + [_job_of(r / "run.log") for r in runs]
    assert {j.split("_")[0] for j in array} == {array[0].split("_")[0]} != {clean.split("_")[0]}  # one array
    acct = _sacct([clean, *array])
    assert all(recs[-1]["state"] == "COMPLETED" for recs in acct.values()), acct
    _kept_before_start(tmp_path / "cache_jobs", [acct[j][-1] for j in array])  # the clean encoder first
    assert all("pretrain clean: reusing" in (r / "run.log").read_text() for r in runs)  # the clean job's encoder
    assert _overlap(acct[array[0]][-1], acct[array[1]][-1])  # no cap: the two runs ran at once on the 2 CPUs
    # submitit's links to the sbatch scripts are gone: the run folder holds no links (the toolkit
    # refuses to write through one, so a second run of the command would stop)
    assert [p for p in out.rglob("*") if p.is_symlink()] == []
    assert (out / "slurm" / array[0].split("_")[0] / f"{array[0].split('_')[0]}_submission.sh").is_file()


@pytest.fixture(scope="module")
def seeds_runs(tmp_path_factory):
    """``run --seeds 0,1`` in-process and as jobs with ``--slurm-max-jobs 1``."""
    d = tmp_path_factory.mktemp("seeds")
    run = _full(SEEDS)
    assert main([*run, "--out", str(d / "here"), "--cache-dir", str(d / "cache_here")]) == 0
    assert main([*run, "--out", str(d / "jobs"), "--cache-dir", str(d / "cache_jobs"), *JOBS,
                 "--slurm-max-jobs", "1"]) == 0
    return d


@SLURM
def test_seeds_as_slurm_jobs_give_the_in_process_numbers(seeds_runs):
    here, jobs = seeds_runs / "here", seeds_runs / "jobs"
    assert _numbers(jobs / "metrics.json") == _numbers(here / "metrics.json")  # pooled over the seeds
    for seed in ("seed_0", "seed_1"):
        assert _numbers(jobs / seed / "metrics.json") == _numbers(here / seed / "metrics.json")
        assert (jobs / seed / "run.log").read_text().startswith(job_line(""))


@SLURM
def test_slurm_max_jobs_bounds_the_running_jobs(seeds_runs):
    jobs = seeds_runs / "jobs"
    runs = [_job_of(jobs / s / "run.log") for s in ("seed_0", "seed_1")]  # one array (each seed its own clean encoder)
    assert runs[0].split("_")[0] == runs[1].split("_")[0]
    acct = _sacct(runs)
    a, b = (acct[j][-1] for j in runs)  # 2 jobs of 1 CPU on a node with 2 free CPUs: with the cap, one at a time
    assert a["state"] == b["state"] == "COMPLETED" and not _overlap(a, b), acct
    array = runs[0].split("_")[0]
    assert "#SBATCH --array=0-1%1" in (jobs / "slurm" / array / f"{array}_submission.sh").read_text()


@SLURM
def test_the_claims_table_as_slurm_jobs_clean_encoders_first(tmp_path, capsys):
    """The smallest claims recipe: one arm (poisonedencoder), one seed, digits, 2 target inputs."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    claims = _full(CLAIMS, recipe_yaml=recipe)
    assert main([*claims, "--out", str(tmp_path / "here"), "--cache-dir", str(tmp_path / "cache_here")]) == 0
    out = tmp_path / "jobs"
    assert main([*claims, "--out", str(out), "--cache-dir", str(tmp_path / "cache_jobs"), *JOBS]) == 0
    printed = capsys.readouterr().out
    first, second = printed.index("claims clean encoders: 1 job(s) submitted"), printed.index("claims: 1 job(s) submitted")
    assert first < second
    arm = "arms/poisonedencoder"
    assert _numbers(out / arm / "metrics.json") == _numbers(tmp_path / "here" / arm / "metrics.json")
    # the table: every row's numbers, verdict and why (its measurement text holds a time per run)
    assert _numbers(out / "claims.json", ("measurement",)) == _numbers(tmp_path / "here" / "claims.json", ("measurement",))
    run = out / arm / "seed_0"
    clean, job = _job_of(run / "clean.log"), _job_of(run / "run.log")
    acct = _sacct([clean, job])
    assert acct[clean][-1]["state"] == acct[job][-1]["state"] == "COMPLETED"
    _kept_before_start(tmp_path / "cache_jobs", [acct[job][-1]])  # the clean-encoder array ran before the runs'
    assert "pretrain clean: reusing" in (run / "run.log").read_text()


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    """The LONG single-seed run in-process: what a stopped and resumed job must reach."""
    d = tmp_path_factory.mktemp("long")
    assert main(["run", str(ROOT / DEMO), "--seeds", "0", *LONG, "--out", str(d / "here"), "--cache-dir", str(d / "cache")]) == 0
    return _numbers(d / "here" / "metrics.json")


DRIVERS: list[subprocess.Popen] = []  # killed after the test if still running


def _driver(out: Path, cache: Path) -> subprocess.Popen:
    """The command, ``run --seeds 0`` as one job, in a process of its own (to be interrupted)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "poisonedencoder", "run", str(ROOT / DEMO), "--seeds", "0", *LONG, "--out", str(out),
           "--cache-dir", str(cache), *JOBS]
    # Ctrl-C's default action, also where pytest runs with SIGINT ignored (a background job of a shell)
    DRIVERS.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)))
    return DRIVERS[-1]


def _wait_for(log: Path, text: str, driver: subprocess.Popen, seconds: float = 180, after: str | None = None) -> None:
    """Until ``log`` holds ``text`` (after the last ``after``, where given)."""
    def seen() -> bool:
        t = log.read_text() if log.is_file() else ""
        if after is not None:
            t = t.rpartition(after)[2] if after in t else ""
        return text in t

    t0 = time.monotonic()
    while not seen():
        assert driver.poll() is None, f"the command ended before {text!r}: {driver.stdout.read()}"
        assert time.monotonic() - t0 < seconds, f"no {text!r} in {log} after {seconds} s"
        time.sleep(0.2)


@SLURM
def test_a_job_stopped_at_its_time_limit_or_preempted_is_requeued_and_resumes_to_the_same_numbers(
        tmp_path, long_reference):
    """At its time limit: Slurm signals the job (USR2) the signal delay before the limit; here the
    test sends that signal, as submitit's own tests do, once the job has a checkpoint, and the job
    requeues itself (submitit: scontrol requeue). Preempted: Slurm kills the job and requeues it
    (here scontrol requeue from outside). Either way the same job runs the same run again, which
    resumes from its last checkpoint, to the numbers of the run never stopped."""
    out = tmp_path / "jobs"
    driver = _driver(out, tmp_path / "cache")
    log = out / "seed_0" / "run.log"
    _wait_for(log, "pretrain clean: epoch 4/40", driver)
    job = _job_of(log)
    script = (out / "slurm" / job / f"{job}_submission.sh").read_text()
    assert "#SBATCH --signal=USR2@90" in script and "#SBATCH --time=10" in script  # what Slurm was asked
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # the time limit's signal
    _wait_for(log, "pretrain clean: epoch ", driver, after="pretrain clean: resuming after epoch ")  # requeued, on again
    subprocess.run(["scontrol", "requeue", job], check=True)  # preempted
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output
    text = log.read_text()
    assert "job stopped at its time limit or by preemption; requeued" in text
    assert text.count(f"{job_line(job)} on ") == 3  # the same job ran three times
    _, _, second, third = text.split(f"{job_line(job)} on ")  # before the first run, and the three runs
    # after the signal at epoch 4 of the clean encoder: on from that epoch's checkpoint or a later one
    resumed = re.findall(r"pretrain clean: resuming after epoch (\d+)", second)
    assert len(resumed) == 1 and int(resumed[0]) >= 4, text
    # after the preemption, wherever it was: a preempted job runs on until the cluster's KillWait
    # ends it (submitit's jobs ignore SIGTERM), so the stage it reached depends on the machine's
    # speed. Whatever it reached is kept: a stage whose epoch N was logged (its checkpoint is written
    # before the line) resumes from N or later, or is reused where it had finished
    stage, epochs = re.findall(r"(pretrain \w+): epoch (\d+)/40", second)[-1]
    if int(epochs) == 40:
        assert f"{stage}: reusing" in third, text
    else:
        again = re.findall(rf"{stage}: resuming after epoch (\d+)", third)
        assert len(again) == 1 and int(again[0]) >= int(epochs), text
    states = [r["state"] for r in _sacct([job], duplicates=True)[job]]
    assert states == ["REQUEUED", "REQUEUED", "COMPLETED"], states
    assert _numbers(out / "metrics.json") == long_reference


@SLURM
def test_ctrl_c_cancels_the_jobs_leaves_none_queued_and_the_same_command_resumes(tmp_path, long_reference):
    out = tmp_path / "jobs"
    driver = _driver(out, tmp_path / "cache")
    log = out / "seed_0" / "run.log"
    _wait_for(log, "pretrain clean: epoch 4/40", driver)
    job = _job_of(log)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=180)
    assert driver.returncode == 130, output
    assert "seeds: cancelled 1 job(s) not finished, none left in the queue" in output, output
    assert "interrupted:" in output
    assert _queue() == []  # nothing queued: not pending, not running, not completing
    assert _sacct([job])[job][-1]["state"] in ("CANCELLED", "FAILED")
    assert "job interrupted (the command that waited on it was interrupted)" in log.read_text()
    lines = len(log.read_text().splitlines())
    time.sleep(3)
    assert len(log.read_text().splitlines()) == lines  # nothing writes to the run any more
    again = _driver(out, tmp_path / "cache")  # the same command
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    text = log.read_text()
    resumed = [x for x in text.splitlines() if x.startswith("pretrain clean: resuming after epoch ")]
    assert resumed and int(resumed[0].split()[-1]) >= 4, text
    assert _numbers(out / "metrics.json") == long_reference


@SLURM
def test_a_failed_job_is_reported_by_its_runs_last_error_line(tmp_path, capsys):
    out = tmp_path / "bad"
    r = main(["run", str(ROOT / DEMO), "--seeds", "0", *TINY, "--set", "pretrain.batch_size=5000", "--out", str(out),
              "--cache-dir", str(tmp_path / "cache"), *JOBS])
    captured = capsys.readouterr()
    assert r == 2 and len(captured.err.splitlines()) == 1, captured.err
    log = out / "seed_0" / "run.log"
    last = log.read_text().splitlines()[-1]
    assert last == "error: pretrain.batch_size 5000 is larger than the pre-training set (300 inputs)", last
    job = _job_of(log)
    assert f"seeds: run failed (job {job}, {out / 'seed_0'}): {last}" in captured.out
    assert _sacct([job])[job][-1]["state"] == "FAILED"
    assert "Traceback" in (out / "slurm" / job / f"{job}_0_log.err").read_text()  # the whole story is kept


@SLURM
def test_the_partition_time_limit_is_read_from_slurm(tmp_path, capsys):
    """The cluster of scripts/slurm/start.sh has a partition ``short`` with a 5-minute limit."""
    from poisonedencoder import api

    if "short" not in subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split():
        pytest.skip("no partition 'short' on this cluster (scripts/slurm/start.sh makes one)")
    assert api.cluster(ROOT / DEMO, tmp_path / "o", "short").timeout_min == 5  # the default, 240, fitted to it
    r = main(["sweep", str(ROOT / DEMO), "--param", "attack.poisoning_rate", "--values", "0.1", "--out", str(tmp_path / "sw"),
              "--slurm", "short", "--slurm-time", "10"])
    err = capsys.readouterr().err
    assert r == 2 and len(err.splitlines()) == 1 and "above partition short's time limit of 5 min" in err, err
    assert not (tmp_path / "sw").exists() and _queue() == []


@SLURM
def test_the_overhead_benchmark_runs_the_sweep_three_ways(tmp_path):
    """benchmarks/slurm_overhead.py at its smallest (no timing asserted)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("slurm_overhead", ROOT / "benchmarks" / "slurm_overhead.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--values", "0.1", "--rounds", "1", "--json", str(tmp_path / "b.json")]) == 0
    r = json.loads((tmp_path / "b.json").read_text())
    assert r["runs"] == 1 and r["jobs"] == 2 and set(r["median_s"]) == {"a_in_process", "b_jobs_one_at_a_time",
                                                                       "c_jobs_at_once"}
    assert all(v > 0 for v in r["median_s"].values()) and r["b_over_a"] > 0 and r["processor"]


def test_the_how_to_shows_the_commands_these_tests_run():
    """docs/CLUSTER.md's commands are this module's, but for --out and --cache-dir (no Slurm needed)."""
    text = (ROOT / "docs" / "CLUSTER.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    shown = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            args = shlex.split(line, comments=True)
            if args[:1] == ["poisonedencoder"]:
                drop = {i + k for i, a in enumerate(args) if a in ("--out", "--cache-dir") for k in (0, 1)}
                shown.append([a for i, a in enumerate(args[1:], 1) if i not in drop])
    for cmd in (SWEEP + JOBS, SEEDS + JOBS + ["--slurm-max-jobs", "1"], CLAIMS + JOBS):
        assert cmd in shown, f"not in docs/CLUSTER.md: poisonedencoder {shlex.join(cmd)}"
    recipe = re.search(r"cat > recipe.yaml <<'EOF'\n(.*?)\nEOF", text, re.S)
    assert recipe and yaml.safe_load(recipe.group(1)) == RECIPE
