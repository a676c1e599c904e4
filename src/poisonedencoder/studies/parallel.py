"""Independent single-seed runs, one after another or ``jobs`` at a time on this machine.

Each run is an :class:`~poisonedencoder.experiment.pipeline.Experiment` in its own folder; a finished run
(``metrics.json`` stamped with the same configuration) is skipped, so a stopped list resumes.
With ``jobs`` > 1 every run is a worker process with its own log (``run.log`` in its folder),
all on the configs' device: on a CPU each gets ``cores // jobs`` threads (two one-thread runs
finish more runs per hour than one two-thread run of a small encoder, benchmarks/parallel_runs.py);
on a GPU the runs share the device, each keeping its data there, so one run's host-side work
(drawing views, checkpoints, evaluation) overlaps another's training. Runs that need the same
clean encoder wait for it on its cache lock; :func:`clean_units` trains those encoders first so
that no worker waits.

A ``budget_s`` bounds the wall time: a run is not started when the runs finished so far say it
would end past the budget, and runs still going at ``budget_s`` are stopped (their last
checkpoint stays; the same list run again resumes them). Whatever happens, :func:`run_units`
returns what finished, what failed and what was left, so the caller can always write its table.

With ``executor`` (a :class:`~poisonedencoder.studies.cluster.Cluster`) the runs not finished are jobs of a
cluster instead, one job array (:mod:`poisonedencoder.studies.cluster`); each job's time limit bounds it
there, so ``budget_s`` and ``jobs`` do not apply.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from ..core.errors import UserError
from ..experiment.rundir import RunDir
from .units import CLEAN, Outcome, Unit, clean_units, finished, key, with_clean_first
from .units import done as _done
from .units import needs as _needs
from .units import work as _work

__all__ = ["CLEAN", "Outcome", "Unit", "clean_units", "finished", "key", "run_units", "with_clean_first"]

POLL_SECONDS = 0.2


def _worker(u: Unit, threads: int | None) -> None:
    """One unit in a worker process, its messages in ``run.log`` (``clean.log`` for a clean unit)."""
    from ..core.io import file_log

    Path(u.out).mkdir(parents=True, exist_ok=True)
    with file_log(RunDir(u.out).log_file(u.stage == CLEAN)) as log:
        try:
            _work(u, threads, log)
        except UserError as e:
            log(f"error: {e}")
            raise SystemExit(2) from None
        except BaseException as e:  # the whole story in the log; the parent reports its last line
            import traceback

            log(traceback.format_exc().rstrip())
            log(f"error: {type(e).__name__}: {e}")
            raise SystemExit(1) from None


def run_units(units: list[Unit] | list[tuple[dict, Path]], jobs: int = 1, log: Callable[[str], None] = print,
              budget_s: float | None = None, name: str = "runs", executor=None,
              on_done: Callable[[Unit], None] | None = None) -> Outcome:
    """Run every unit not finished yet, in order, ``jobs`` at a time (a run waits while a clean
    unit of its clean encoder is queued or running: :func:`with_clean_first`), or as jobs of
    ``executor`` (a :class:`~poisonedencoder.studies.cluster.Cluster`; see the module's docstring).
    ``on_done(unit)`` is called in this process after each unit that finishes here."""
    if executor is not None and (jobs > 1 or budget_s is not None):
        raise ValueError("a cluster's jobs are bounded by their time limit: give neither jobs > 1 nor budget_s")
    units = [u if isinstance(u, Unit) else Unit(u[0], Path(u[1])) for u in units]
    res, todo = Outcome(), []
    for u in units:
        if _done(u):
            res.finished.append(Path(u.out))
        else:
            todo.append(u)
    if res.finished:
        log(f"{name}: {len(res.finished)} of {len(units)} finished before; {len(todo)} to run")
    if not todo:
        return res
    if executor is not None:
        from .cluster import run_jobs

        return run_jobs(todo, executor, log, name, res)
    start = time.monotonic()
    if jobs <= 1:
        for i, u in enumerate(todo):
            if _over_budget(start, budget_s, _durations(res, u)):
                res.left += [Path(v.out) for v in todo[i:]]
                log(f"{name}: budget of {budget_s:.0f}s: {len(todo) - i} not started")
                break
            log(f"{name}: {u.stage} -> {u.out}")
            t0 = time.monotonic()
            try:
                _work(u, None, log)
            except UserError as e:  # as a worker's exit status 2: this unit failed, the list goes on
                res.failed.append((Path(u.out), str(e)))
                log(f"{name}: {u.stage} failed ({u.out}): {e}")
                continue
            res.seconds[key(u)] = time.monotonic() - t0
            res.finished.append(Path(u.out))
            if on_done:
                on_done(u)
        return res
    return _pool(todo, jobs, log, budget_s, name, res, start, on_done)


def _durations(res: Outcome, u: Unit) -> list[float]:
    """The wall times of the finished units of ``u``'s stage (all finished units if none yet)."""
    same = [v for k, v in res.seconds.items() if k.endswith(" (clean)") == (u.stage == CLEAN)]
    return same or list(res.seconds.values())


def _over_budget(start: float, budget_s: float | None, durations: list[float]) -> bool:
    """Would a unit started now end past the budget, by the mean of the like units finished so far?"""
    if budget_s is None:
        return False
    elapsed = time.monotonic() - start
    guess = sum(durations) / len(durations) if durations else 0.0
    return elapsed + guess > budget_s


def _ready(u: Unit, queue: list[Unit], running: list, needs: dict) -> bool:
    """A run may start once no clean unit of its clean encoder is waiting or running."""
    if u.stage == CLEAN:
        return True
    return not any(v.stage == CLEAN and needs[id(v)] == needs[id(u)] for v in queue + [r[1] for r in running])


def _pool(todo: list[Unit], jobs: int, log, budget_s, name: str, res: Outcome, start: float,
          on_done=None) -> Outcome:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    queue, running = list(todo), []  # running: (process, unit, start time)
    needs = {id(u): _needs(u) for u in todo}  # each unit's clean encoder, computed once
    stop_starting = False
    while queue or running:
        while queue and len(running) < jobs and not stop_starting:
            u = next((v for v in queue if _ready(v, queue, running, needs)), None)
            if u is None:  # every waiting run needs a clean encoder still training
                break
            if _over_budget(start, budget_s, _durations(res, u)):
                stop_starting = True
                log(f"{name}: budget of {budget_s:.0f}s: {len(queue)} not started")
                break
            queue.remove(u)
            p = ctx.Process(target=_worker, args=(u, threads), daemon=False)
            p.start()
            running.append((p, u, time.monotonic()))
        time.sleep(POLL_SECONDS)
        for item in list(running):
            p, u, t0 = item
            if p.is_alive():
                continue
            running.remove(item)
            if p.exitcode == 0:
                res.seconds[key(u)] = time.monotonic() - t0
                res.finished.append(Path(u.out))
                log(f"{name}: {u.stage} finished in {res.seconds[key(u)]:.0f}s ({u.out})")
                if on_done:
                    on_done(u)
            else:
                why = _last_line(u)
                res.failed.append((Path(u.out), why))
                log(f"{name}: {u.stage} failed ({u.out}): {why}")
        if budget_s is not None and running and time.monotonic() - start > budget_s:
            for p, _u, _ in running:
                p.terminate()
            for p, u, _ in running:
                p.join(10)
                res.left.append(Path(u.out))
                log(f"{name}: stopped at the budget of {budget_s:.0f}s ({u.out}; its checkpoints stay)")
            running = []
        if stop_starting and not running:
            break
    res.left += [Path(u.out) for u in queue]
    return res


def _last_line(u: Unit) -> str:
    f = RunDir(u.out).log_file(u.stage == CLEAN)
    try:
        lines = [x for x in f.read_text().splitlines() if x.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no log"
