"""Independent single-seed runs as jobs of a cluster, through submitit.

:func:`poisonedencoder.studies.parallel.run_units` hands its units here when given a :class:`Cluster`:
every unit not finished yet becomes one job, all of them one job array (``executor.map_array``;
on Slurm one ``sbatch --array``), and the call waits for them and returns the same
:class:`~poisonedencoder.studies.units.Outcome` as the local runs. A job runs
:class:`~poisonedencoder.experiment.pipeline.Experiment` in the unit's run folder with its messages in that
folder's ``run.log`` (``clean.log`` for a clean unit) and on the job's standard output; submitit
keeps each job's standard output and error in ``folder/<job id>/``. A failed job's reason is the
last line of its run's log (``error: ...``), else the last line of its standard error.

A job stopped at its time limit or preempted is requeued by submitit (the job is
checkpointable: it is the same unit again) and resumes from the run's last pre-training
checkpoint, at most three times. Slurm sends the signal for this ``signal_delay_s`` before the
limit (``sbatch --signal``), up to a minute earlier than asked; a limit so short that the signal
would come before a job can start is refused when the :class:`Cluster` is made. The run folders
and the cache folder (shared clean encoders, decoded datasets, guarded by ``flock`` locks) must
be on storage every node sees.

Ctrl-C in the waiting process (``KeyboardInterrupt``) cancels the jobs not finished: on Slurm it
interrupts the running ones (SIGINT through ``scancel --signal=INT``: submitit's jobs ignore the
SIGTERM of a plain ``scancel`` until the cluster's KillWait runs out), cancels the rest and waits
until none of them is left in the queue, so that the same command, run again, resumes from the
checkpoints without an old job still writing them.

submitit's job requeues itself with ``scontrol requeue``, and Slurm ends the job's processes as it
requeues it, that ``scontrol`` among them: submitit then takes the requeue for failed and records
an error, and the waiting process would report the run as failed while Slurm runs it again. In a
job, :class:`UnitJob` takes a requeue whose ``scontrol`` died of SIGTERM as done.

``kind="local"`` runs the same jobs on this machine with submitit's ``LocalExecutor``, every job
of an array at once: for tests and for trying a sweep before a cluster. submitit pickles the job's
function and its unit (the toolkit's own code and a configuration) into the folder and the job
loads it back; a job folder is no place for files from elsewhere.
"""
from __future__ import annotations

import math
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..core.errors import UserError, check_number
from ..experiment.rundir import RunDir

KINDS = ("slurm", "local")
POLL_SECONDS = {"local": 0.5, "slurm": 5.0}
INSTALL = "pip install 'poisonedencoder[cluster]'"

# field -> the command-line option that sets it (error messages name both)
OPTIONS = {"partition": "--slurm", "gpus_per_job": "--slurm-gpus", "cpus_per_job": "--slurm-cpus",
           "timeout_min": "--slurm-time", "mem_gb": "--slurm-mem", "array_parallelism": "--slurm-max-jobs",
           "folder": "--slurm-folder", "signal_delay_s": "--slurm-signal-delay"}
SLURM_ONLY = ("partition", "mem_gb", "array_parallelism", "signal_delay_s")
DEFAULT_TIMEOUT_MIN = 240
# the requeue signal (sbatch --signal=USR2@DELAY): Slurm may send it up to a minute before the
# DELAY asked (its timer runs in steps); the job then needs a few seconds to pickle itself and
# call scontrol requeue, and before the earliest signal it needs time to start Python and torch,
# load its data and train to a checkpoint
SIGNAL_EARLY_S = 60
DEFAULT_SIGNAL_DELAY_S = 90  # submitit's default
MIN_SIGNAL_DELAY_S = 20
MIN_START_S = 60
CANCEL_WAIT_S = 120  # after Ctrl-C: how long to wait for the cancelled jobs to leave the queue


def _name(field_name: str) -> str:
    return f"{OPTIONS[field_name]} ({field_name})"


@dataclass(frozen=True)
class Cluster:
    """Where and how the runs go as jobs; checked when made (:class:`UserError`, one line).

    ``kind``: ``slurm`` (submitit's Slurm executor; needs ``sbatch``) or ``local`` (submitit's
    local executor: the jobs run on this machine, all at once). ``folder``: submitit's folder
    (the jobs' pickles and logs, ``folder/<job id>/``). ``partition``: the Slurm partition (None:
    the cluster's default). ``gpus_per_job``, ``cpus_per_job``: each job's GPUs and CPU cores (a
    run uses ``cpus_per_job`` torch threads unless its config sets ``pretrain.threads``).
    ``timeout_min``: each job's time limit in minutes. ``mem_gb``: each job's memory (None: the
    cluster's default). ``array_parallelism``: at most this many jobs of an array at once (None:
    submitit's default, 256, within the cluster's own limits). ``signal_delay_s``: Slurm signals a
    job this many seconds before its limit, and submitit requeues it (None: 90, or less for a limit
    under 4 minutes, see :meth:`signal_delay`); the limit must leave a job a minute before the
    earliest signal."""

    kind: str = "slurm"
    folder: str | Path = "slurm"
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int = 4
    timeout_min: int = DEFAULT_TIMEOUT_MIN
    mem_gb: float | None = None
    array_parallelism: int | None = None
    signal_delay_s: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"cluster kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not str(self.folder).strip():
            raise UserError(f"{_name('folder')} must be a folder, got an empty name")
        if self.partition is not None and (not isinstance(self.partition, str) or not self.partition.strip()
                                           or any(c.isspace() for c in self.partition)):
            raise UserError(f"{_name('partition')} must be a partition name, got {self.partition!r}")
        check_number(self.gpus_per_job, _name("gpus_per_job"), 0, 64, integer=True)
        check_number(self.cpus_per_job, _name("cpus_per_job"), 1, 1024, integer=True)
        check_number(self.timeout_min, _name("timeout_min"), 1, 60 * 24 * 30, integer=True)
        if self.mem_gb is not None:
            check_number(self.mem_gb, _name("mem_gb"), 0, 16384, lo_open=True)
        if self.array_parallelism is not None:
            check_number(self.array_parallelism, _name("array_parallelism"), 1, 100000, integer=True)
        if self.signal_delay_s is not None:
            check_number(self.signal_delay_s, _name("signal_delay_s"), MIN_SIGNAL_DELAY_S, 3600, integer=True)
        if self.kind == "local":
            given = [f for f in SLURM_ONLY if getattr(self, f) is not None]
            if given:
                raise UserError(f"{_name(given[0])} is a Slurm setting; the local executor runs every job "
                                "on this machine at once")
        else:
            self._check_time()

    def signal_delay(self) -> int:
        """Seconds before the limit at which Slurm signals a job to requeue it: ``signal_delay_s``,
        else 90 where the limit leaves room, else what leaves a job :data:`MIN_START_S` before the
        earliest signal (60 s with a 3-minute limit)."""
        if self.signal_delay_s is not None:
            return self.signal_delay_s
        room = self.timeout_min * 60 - SIGNAL_EARLY_S - MIN_START_S
        return max(MIN_SIGNAL_DELAY_S, min(DEFAULT_SIGNAL_DELAY_S, room))

    def _check_time(self) -> None:
        """A job's limit leaves it time to start before Slurm's requeue signal (else every job
        would be signalled, requeued and signalled again before its run begins)."""
        delay = self.signal_delay()
        if self.timeout_min * 60 - delay - SIGNAL_EARLY_S >= MIN_START_S:
            return
        shortest = math.ceil((delay + SIGNAL_EARLY_S + MIN_START_S) / 60)
        smaller = "" if self.signal_delay_s is None else f" or a smaller {OPTIONS['signal_delay_s']}"
        raise UserError(f"{_name('timeout_min')} {self.timeout_min} is too short: Slurm signals a job {delay} s before "
                        f"its limit, up to {SIGNAL_EARLY_S} s earlier, to requeue it, which leaves it under "
                        f"{MIN_START_S} s to start; give {OPTIONS['timeout_min']} {shortest} or more{smaller}")

    def describe(self) -> str:
        """``slurm (partition gpu, 1 GPU, 4 CPUs, 240 min per job)``."""
        where = "" if self.kind == "local" else f"partition {self.partition or '(default)'}, "
        return (f"{self.kind} ({where}{self.gpus_per_job} GPU, {self.cpus_per_job} CPU, "
                f"{self.timeout_min} min per job; logs in {self.folder})")

    def parameters(self) -> dict:
        """The settings for ``submitit.AutoExecutor.update_parameters``."""
        p = {"name": "poisonedencoder", "timeout_min": self.timeout_min, "cpus_per_task": self.cpus_per_job,
             "gpus_per_node": self.gpus_per_job, "tasks_per_node": 1, "nodes": 1}
        if self.kind == "slurm":
            p["mem_gb"] = self.mem_gb
            p["slurm_partition"] = self.partition
            p["slurm_array_parallelism"] = self.array_parallelism
            p["slurm_signal_delay_s"] = self.signal_delay()
        return {k: v for k, v in p.items() if v is not None}

    def check_submit(self) -> None:
        """This machine can submit the jobs: submitit is installed and, for Slurm, sbatch and srun are here."""
        _submitit()
        if self.kind == "slurm":
            missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
            if missing:
                raise UserError(f"--slurm needs Slurm's {' and '.join(missing)} on PATH (run on a login node of the "
                                "cluster); to try the jobs on this machine use --submitit-local")

    def fit_partition(self, time_given: bool) -> Cluster:
        """Checked against the partition (``sinfo``): it exists, and ``timeout_min`` is within its
        time limit. The default limit (``time_given`` False) becomes the partition's limit where
        that is shorter. Returns the cluster to use; where ``sinfo`` does not answer, this one
        (``sbatch`` then says what is wrong)."""
        if self.kind != "slurm":
            return self
        partitions = slurm_partitions()
        if partitions is None:
            return self
        name = self.partition or next((p for p, (_lim, default) in partitions.items() if default), None)
        if name is None:
            raise UserError("this cluster has no default partition: give one, --slurm PARTITION "
                            f"(sinfo lists {', '.join(partitions) or 'none'})")
        if name not in partitions:
            raise UserError(f"{_name('partition')} {name}: no such partition here (sinfo lists "
                            f"{', '.join(partitions) or 'none'})")
        limit = partitions[name][0]
        if limit is None or self.timeout_min <= limit:
            return self
        if time_given:
            raise UserError(f"{_name('timeout_min')} {self.timeout_min} is above partition {name}'s time limit of "
                            f"{limit} min: give {OPTIONS['timeout_min']} {limit} or less")
        return replace(self, timeout_min=limit)

    def executor(self):
        """A submitit executor with these settings (jobs' files in ``folder/<job id>/``)."""
        self.check_submit()
        submitit = _submitit()
        ex = submitit.AutoExecutor(folder=Path(self.folder) / "%j", cluster=self.kind)
        ex.update_parameters(**self.parameters())
        return ex

    def check_units(self, units: list) -> None:
        """The runs' device fits the jobs' GPUs."""
        self.check_devices([u.cfg["device"] for u in units])

    def check_devices(self, devices: list[str]) -> None:
        """A run on ``cuda`` needs a GPU per job, and a GPU per job needs runs on ``cuda``."""
        devices = sorted({str(d) for d in devices})
        cuda = [d for d in devices if d.startswith("cuda")]
        if cuda and self.gpus_per_job == 0:
            raise UserError(f"device {cuda[0]} needs a GPU per job: add {OPTIONS['gpus_per_job']} 1")
        if self.gpus_per_job and not cuda:
            raise UserError(f"{OPTIONS['gpus_per_job']} {self.gpus_per_job} with device {devices[0]}: the runs would "
                            "leave their GPUs idle; set --device cuda (or the gpu preset)")


def slurm_partitions() -> dict[str, tuple[int | None, bool]] | None:
    """``sinfo``'s partitions: name -> (time limit in minutes or None for none, whether it is the
    default); None where ``sinfo`` is missing or fails."""
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%P|%l"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    out: dict[str, tuple[int | None, bool]] = {}
    for line in r.stdout.splitlines():
        name, _, limit = line.strip().partition("|")
        if name:
            default = name.endswith("*")
            name = name.rstrip("*")
            out[name] = (parse_minutes(limit), default or out.get(name, (None, False))[1])
    return out


def parse_minutes(text: str) -> int | None:
    """Slurm's time (``infinite``, ``MM:SS``, ``HH:MM:SS``, ``D-HH:MM:SS``, ``D-HH``) in whole
    minutes, rounded down; None for no limit or what cannot be read."""
    text = text.strip()
    if not text or text.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days, _, rest = text.rpartition("-")
    try:
        d = int(days) if days else 0
        parts = [int(x) for x in rest.split(":")]
    except ValueError:
        return None
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        parts += [0] * (3 - len(parts))
        h, m, _s = parts[:3]
    elif len(parts) == 3:
        h, m, _s = parts
    else:  # MM:SS or MM
        h, m = 0, parts[0]
    return d * 1440 + h * 60 + m


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UserError(f"running jobs through submitit needs the submitit package: {INSTALL}") from None
    return submitit


class UnitJob:
    """One unit as a job's function: ``UnitJob(threads)(unit)`` returns the run's wall seconds.

    ``checkpoint`` makes it checkpointable for submitit (duck typing; submitit need not be
    importable where this class is defined): at the time limit or on preemption the job is
    requeued with the same unit, which resumes from the run's checkpoints."""

    def __init__(self, threads: int | None):
        self.threads = threads

    def __call__(self, u) -> float:
        import traceback

        from ..core.io import file_log
        from .units import CLEAN, work

        submitit = _submitit()
        env = submitit.JobEnvironment()
        _requeue_survives_its_kill()
        Path(u.out).mkdir(parents=True, exist_ok=True)
        with file_log(RunDir(u.out).log_file(u.stage == CLEAN)) as to_file:
            def log(line: str) -> None:
                to_file(line)
                print(line, flush=True)

            log(f"{job_line(env.job_id)} on {env.hostname}: {u.stage} -> {u.out}")
            t0 = time.monotonic()
            try:
                work(u, self.threads, log)
            except UserError as e:
                log(f"error: {e}")
                raise
            except SystemExit:  # submitit requeues the job after its checkpoint (time limit, preemption)
                log("job stopped at its time limit or by preemption; requeued, it resumes from the checkpoints")
                raise
            except KeyboardInterrupt:  # SIGINT: the waiting command was interrupted and cancels its jobs
                log("job interrupted (the command that waited on it was interrupted); it resumes from the "
                    "checkpoints when the same command runs again")
                raise
            except BaseException as e:  # the traceback also reaches the job's standard error
                to_file(traceback.format_exc().rstrip())
                log(f"error: {type(e).__name__}: {e}")
                raise
        return time.monotonic() - t0

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _requeue_survives_its_kill() -> None:
    """In a Slurm job: submitit's ``scontrol requeue`` killed by SIGTERM counts as done (Slurm
    ends the job's processes as it requeues it, and may end that ``scontrol`` before it exits)."""
    try:
        from submitit.slurm.slurm import SlurmJobEnvironment
    except ImportError:
        return
    requeue = SlurmJobEnvironment._requeue
    if getattr(requeue, "survives_its_kill", False):
        return

    def _requeue(self, countdown: int) -> None:
        try:
            requeue(self, countdown)
        except subprocess.CalledProcessError as e:
            if e.returncode != -signal.SIGTERM:
                raise

    _requeue.survives_its_kill = True
    SlurmJobEnvironment._requeue = _requeue


def job_line(job_id: str) -> str:
    """The first line a job writes to its run's log."""
    return f"submitit job {job_id}"


def run_jobs(todo: list, cluster: Cluster, log: Callable[[str], None], name: str, res):
    """Every unit of ``todo`` as one job of one array; wait; record each in ``res`` (an
    :class:`~poisonedencoder.studies.units.Outcome`). Ctrl-C cancels the jobs not finished."""
    cluster.check_units(todo)
    ex = cluster.executor()
    with _ctrl_c_held() as interrupted:  # Ctrl-C while sbatch runs: after it, once the jobs are known
        try:
            jobs = ex.map_array(UnitJob(cluster.cpus_per_job), todo)
        except _submitit().core.utils.FailedJobError as e:  # sbatch refused them (a partition, a limit)
            if interrupted():
                raise KeyboardInterrupt from None
            lines = [x for x in str(e).splitlines() if x.strip()]
            raise UserError(f"the jobs were not submitted: {lines[-1] if lines else e}") from None
        finally:
            _drop_submission_links(cluster.folder)
    if interrupted():
        _cancel(jobs, cluster, log, name)
        raise KeyboardInterrupt
    if not jobs:
        return res
    log(f"{name}: {len(jobs)} job(s) submitted: {cluster.describe()}")
    for job, u in zip(jobs, todo, strict=True):
        log(f"{name}: job {job.job_id}: {u.stage} -> {u.out}")
    pending = list(zip(jobs, todo, strict=True))
    try:
        while pending:
            for item in list(pending):
                job, u = item
                if not job.done():
                    continue
                pending.remove(item)
                _collect(job, u, log, name, res)
            if pending:
                time.sleep(POLL_SECONDS[cluster.kind])
    except KeyboardInterrupt:
        _cancel([job for job, _u in pending], cluster, log, name)
        raise
    return res


def _drop_submission_links(folder: str | Path) -> None:
    """submitit leaves, beside the job folders, a symbolic link to each array's sbatch script
    (``.submission_file_<uuid>.sh``; the script itself is ``<job id>/<job id>_submission.sh``):
    removed, so that the run folder that holds the submitit folder (``OUT/slurm`` by default)
    holds no links, which the toolkit refuses to write through."""
    for link in Path(folder).glob(".submission_file_*.sh"):
        if link.is_symlink():
            link.unlink(missing_ok=True)


@contextmanager
def _ctrl_c_held():
    """Within: SIGINT is noted, not raised (in the main thread; elsewhere it is left as it is).
    Yields a function that says whether one came."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    old = signal.signal(signal.SIGINT, lambda *_a: got.append(1))
    try:
        yield lambda: bool(got)
    finally:
        signal.signal(signal.SIGINT, old)


def _cancel(jobs: list, cluster: Cluster, log: Callable[[str], None], name: str) -> None:
    """Cancel ``jobs``; on Slurm interrupt the running ones now and wait until none is queued."""
    if cluster.kind != "slurm":
        for job in jobs:
            job.cancel(check=False)
        log(f"{name}: cancelled {len(jobs)} job(s) not finished (their checkpoints stay; the same command resumes)")
        return
    ids = [str(job.job_id) for job in jobs]
    if ids:
        _slurm(["scancel", "--signal=INT", *ids])  # the running ones end now (KeyboardInterrupt in the job)
        _slurm(["scancel", *ids])  # the pending ones leave the queue
    deadline = time.monotonic() + CANCEL_WAIT_S
    left = _queued(ids)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = _queued(ids)
    if left is None:
        log(f"{name}: cancelled {len(ids)} job(s) not finished; squeue did not answer: check that none is left "
            "(squeue) before running the same command again")
    elif left:
        log(f"{name}: cancelled {len(ids)} job(s) not finished; {len(left)} still in the queue after {CANCEL_WAIT_S} s "
            f"({', '.join(sorted(left))}): wait for them to end (squeue) before running the same command again")
    else:
        log(f"{name}: cancelled {len(ids)} job(s) not finished, none left in the queue (their checkpoints stay; the "
            "same command resumes)")


def _slurm(cmd: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None


def queued_jobs() -> set[str] | None:
    """This user's jobs in Slurm's queue (pending, running, completing), array tasks one by one;
    None where ``squeue`` does not answer."""
    import getpass

    r = _slurm(["squeue", "-u", getpass.getuser(), "-h", "--array", "-o", "%i"])
    if r is None or r.returncode != 0:
        return None
    return {x.strip() for x in r.stdout.split() if x.strip()}


def _queued(ids: list[str]) -> set[str] | None:
    """Those of ``ids`` still in the queue (of an array's pending tasks shown as ``A_[0-3]``, their
    array id); None where ``squeue`` does not answer."""
    queue = queued_jobs()
    if queue is None:
        return None
    arrays = {q.split("_")[0] for q in queue if "[" in q}
    return {i for i in ids if i in queue or i.split("_")[0] in arrays}


def _collect(job, u, log, name: str, res) -> None:
    submitit = _submitit()
    try:
        seconds = job.result()
    except submitit.core.utils.FailedJobError:  # the job's function raised: its run's log says why
        why = _reason(job, u)
    except submitit.core.utils.UncompletedJobError:  # killed (memory, node failure, cancelled) before a result
        why = f"job {job.job_id} ended without a result (state {job.state}): {_last_line_of(job.paths.stderr)}"
    else:
        res.seconds[str(u.out)] = seconds
        res.finished.append(Path(u.out))
        log(f"{name}: {u.stage} finished in {seconds:.0f}s (job {job.job_id}, {u.out})")
        return
    res.failed.append((Path(u.out), why))
    log(f"{name}: {u.stage} failed (job {job.job_id}, {u.out}): {why}")


def _reason(job, u) -> str:
    """The last line of the run's log when this job wrote to it, else of the job's standard error."""
    from .units import CLEAN

    run_log = RunDir(u.out).log_file(u.stage == CLEAN)
    try:
        text = run_log.read_text()
    except OSError:
        text = ""
    if job_line(job.job_id) in text:
        return _last_line_of(run_log)
    return f"job {job.job_id}: {_last_line_of(job.paths.stderr)}"


def _last_line_of(path: Path) -> str:
    try:
        lines = [x for x in Path(path).read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return f"no log ({path})"
    return lines[-1][:300] if lines else f"empty log ({path})"
