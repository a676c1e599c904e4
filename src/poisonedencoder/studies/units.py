"""The unit of many experiments: one single-seed run (or only its clean encoder) in its folder,
and what a list of them came to. Shared by the runs on this machine
(:mod:`poisonedencoder.studies.parallel`) and the jobs of a cluster (:mod:`poisonedencoder.studies.cluster`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..experiment.rundir import RunDir

CLEAN = "clean"
"""Stage of a unit that only pre-trains (and caches) the clean encoder of its configuration."""


@dataclass(frozen=True)
class Unit:
    cfg: dict        # a single-seed, resolved configuration
    out: Path        # its run folder
    stage: str = "run"  # "run": the whole experiment; "clean": its clean encoder only


@dataclass
class Outcome:
    finished: list[Path] = field(default_factory=list)   # finished before or now
    failed: list[tuple[Path, str]] = field(default_factory=list)
    left: list[Path] = field(default_factory=list)       # not started or stopped by the budget
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds of each run done now, by folder


def finished(cfg: dict, d: Path) -> bool:
    """``d`` holds a finished run of ``cfg`` (its metrics and the configuration's stamp)."""
    from .. import config as C

    return RunDir(d).finished(C.experiment_fingerprint(cfg))


def key(u: Unit) -> str:
    """The unit's name in :attr:`Outcome.seconds`: its folder, with `` (clean)`` for a clean unit
    (which shares the folder of the first run that needs its encoder)."""
    return str(u.out) + (" (clean)" if u.stage == CLEAN else "")


def with_clean_first(units: list[Unit]) -> list[Unit]:
    """``units`` with each clean encoder that they need and that is not trained yet as a unit of
    its own, placed just before the first run that needs it (so a long list yields finished
    runs early, and no worker waits on another's encoder: see :func:`run_units`)."""
    from ..experiment.pipeline import clean_encoder_dir

    seen, out = set(), []
    for u in units:
        if u.stage != CLEAN and not finished(u.cfg, u.out):
            k = clean_encoder_dir(u.cfg)
            if k not in seen:
                seen.add(k)
                out.append(Unit(u.cfg, u.out, CLEAN))
        out.append(u)
    return out


def needs(u: Unit):
    from ..experiment.pipeline import clean_encoder_dir

    return clean_encoder_dir(u.cfg)


def done(u: Unit) -> bool:
    if u.stage == CLEAN:
        from ..experiment.pipeline import clean_encoder_dir

        return (clean_encoder_dir(u.cfg) / "encoder.pt").is_file()
    return finished(u.cfg, u.out)


def clean_units(units: list[Unit]) -> list[Unit]:
    """One ``clean`` unit per distinct clean encoder the runs of ``units`` not finished yet need
    (their first run's folder; the encoder itself goes to the shared cache)."""
    return [u for u in with_clean_first(units) if u.stage == CLEAN]


def work(u: Unit, threads: int | None, log) -> None:
    from ..experiment.pipeline import Experiment

    cfg = u.cfg
    if threads and not cfg["pretrain"].get("threads"):
        cfg = {**cfg, "pretrain": {**cfg["pretrain"], "threads": threads}}
    exp = Experiment(cfg, u.out, log=log)
    exp.pretrain_clean() if u.stage == CLEAN else exp.run()
