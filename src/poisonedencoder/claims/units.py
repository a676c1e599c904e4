"""Run a list of single-seed experiments, one after another or ``jobs`` at a time.

On a CPU, a small encoder does not use two cores well: two runs of one thread each finish more
runs per hour than one run of two threads (benchmarks/parallel_runs.py measures the ratio).
Each run is an :class:`~poisonedencoder.pipeline.Experiment` in its own folder with its own log
(``run.log``); a finished run (``metrics.json`` of the same configuration) is skipped, so a
stopped list resumes. Runs that share a clean encoder wait for it on its cache lock.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def finished(cfg: dict, d: Path) -> bool:
    from .. import config as C

    stamp = d / ".fingerprint"
    return (d / "metrics.json").is_file() and stamp.is_file() and stamp.read_text().strip() == C.experiment_fingerprint(cfg)


def _one(cfg: dict, d: str, threads: int | None) -> str:
    """One run in a worker process (its messages go to ``d/run.log``)."""
    from ..io import file_log
    from ..pipeline import Experiment

    if threads:
        cfg = {**cfg, "pretrain": {**cfg["pretrain"], "threads": threads}}
    with file_log(Path(d) / "run.log") as log:
        Experiment(cfg, d, log=log).run()
    return d


def run_units(units: list[tuple[dict, Path]], jobs: int = 1, log: Callable[[str], None] = print) -> None:
    """Run every ``(single-seed config, run folder)`` not finished yet; ``jobs`` > 1 runs that many
    at once in worker processes of ``cores // jobs`` threads each."""
    from ..pipeline import Experiment

    todo = [(c, Path(d)) for c, d in units if not finished(c, Path(d))]
    if len(units) > len(todo):
        log(f"claims: {len(units) - len(todo)} of {len(units)} runs finished before; {len(todo)} to run")
    if jobs <= 1 or len(todo) <= 1:
        for c, d in todo:
            log(f"claims: run -> {d}")
            Experiment(c, d, log=log).run()
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_one, c, str(d), threads): d for c, d in todo}
        for i, f in enumerate(as_completed(futures), 1):
            f.result()  # a worker's error stops the list here, with its message
            log(f"claims: {i}/{len(todo)} runs finished ({futures[f]}; log in run.log)")
