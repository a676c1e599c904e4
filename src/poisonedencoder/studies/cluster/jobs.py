"""The jobs themselves: a unit as a checkpointable job (:class:`UnitJob`), the job array submitted
and waited for (:func:`run_jobs`), Ctrl-C's cancel, and each job's outcome read back from its run's
log (:mod:`poisonedencoder.studies.cluster`)."""
from __future__ import annotations

import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ...core.errors import UserError
from ...experiment.rundir import RunDir
from .options import CANCEL_WAIT_S, INTERRUPT_WAIT_S, POLL_SECONDS, Cluster, _submitit

class UnitJob:
    """One unit as a job's function: ``UnitJob(threads)(unit)`` returns the run's wall seconds.

    ``checkpoint`` makes it checkpointable for submitit (duck typing; submitit need not be
    importable where this class is defined): at the time limit or on preemption the job is
    requeued with the same unit, which resumes from the run's checkpoints."""

    def __init__(self, threads: int | None):
        self.threads = threads

    def __call__(self, u) -> float:
        import traceback

        from ...core.io import file_log
        from ..units import CLEAN, work

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
        _slurm(["scancel", "--state=PENDING", *ids])  # the pending ones leave the queue
        _slurm(["scancel", "--signal=INT", *ids])  # the running ones end now (KeyboardInterrupt in the job)
    # no plain scancel of the running ones beside their SIGINT: Slurm may deliver the two out of
    # order, and a step already being killed drops the signal (the job then runs on until KillWait,
    # and its log never says that it was interrupted); only what is left after INTERRUPT_WAIT_S (a
    # job that started in between, one stuck in a long call) is cancelled outright
    t0 = time.monotonic()
    cancelled = False
    left = _queued(ids)
    while left and time.monotonic() < t0 + CANCEL_WAIT_S:
        if not cancelled and time.monotonic() >= t0 + INTERRUPT_WAIT_S:
            _slurm(["scancel", *sorted(left)])
            cancelled = True
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
    from ..units import CLEAN

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
