"""A claims table measured over many short calls (``claims --campaign RECORD``): a fixed queue of
arms, run in its order within a budget, resuming from a record folder (what ``claims --record``
writes) whose runs are never run again.

Each call reads which runs the record holds (each checked: :func:`check_run`), copies them into
the claims folder so that the arms' runners find them finished, and runs the arms of
:func:`queue` that the record does not complete, in the queue's order, within the budget. What a
call finishes is recorded (``claims --record``) and merged into the record by ``claims --merge``
(:mod:`.merge`).
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ... import config as C
from ...config.files import parse_yaml
from ...core.errors import UserError
from ...core.folders import claim_dir
from ...core.io import write_text
from ...experiment.rundir import METRICS, RunDir
from .arm_configs import arm_config
from .arms import LARGE_CROPS, RACE_VARIANTS, UNKNOWN, Arm, large_crops_scale, plan, race_arm, recipe_rates


def large_crops_arm(cfg: dict) -> str:
    """The arm of ``large_crops`` at :data:`LARGE_CROPS`: the plan's own where the recipe's scale is that."""
    return "defense_large_crops" if large_crops_scale(cfg) == LARGE_CROPS else f"defense_large_crops_{LARGE_CROPS:g}"


def queue(cfg: dict, arms: list[Arm]) -> list[str]:
    """The campaign's arms, first to last: the recipe (every row's reference), one target per run,
    the rate curve, the other methods, the defenses, fine-tuning with its control (and its
    reference), Witches' Brew, the race's ``crop_disagreement`` cells, then the recipe's other
    rows (ICP, ``large_crops`` at the defense's default) and the rate curve's last point (5% per
    target, which its row needs). Only arms of ``arms`` (the plan)."""
    names = ["poisonedencoder", "one_per_run", "rate_0.005", "rate_0.01", "rate_0.02",
             "method_mocov2", "method_byol", "method_simsiam", "defense_part_hash", "defense_drop_disagreeing",
             "defense_overlapping_views", large_crops_arm(cfg), "finetune_none", "defense_finetune", "witches_brew",
             *(race_arm(v, "crop_disagreement") for v in RACE_VARIANTS), "icp", "defense_large_crops", "rate_0.05"]
    have = {a.name for a in arms}
    return [n for n in dict.fromkeys(names) if n in have]


def planned_runs(cfg: dict, arm: Arm) -> int:
    """The runs an arm needs: one per seed, or one per target input for one target per run."""
    seeds = cfg["seeds"] or [cfg["seed"]]
    return len(seeds) * (recipe_rates(cfg)[1] if arm.one_per_run else 1)


def run_dirs(root: Path, arm: Arm) -> list[tuple[int, Path]]:
    """``(seed, folder)`` of every run of ``arm`` under ``root`` (``arms/<arm>/seed_<s>[/target_*]``)
    holding a ``metrics.json``; a folder named otherwise is refused."""
    out = []
    base = root / "arms" / arm.name
    for m in sorted(base.rglob(METRICS)) if base.is_dir() else []:
        rel = m.parent.relative_to(base).parts
        if not rel:
            continue  # the arm's pooled metrics
        try:
            seed = int(rel[0].removeprefix("seed_")) if rel[0].startswith("seed_") else None
        except ValueError:
            seed = None
        shape_ok = len(rel) == 2 and rel[1].startswith("target_") if arm.one_per_run else len(rel) == 1
        if seed is None or not shape_ok:
            raise UserError(f"{m.parent}: not a run folder of arm {arm.name} (arms/{arm.name}/seed_<s>"
                            f"{'/target_<i>_to_<c>' if arm.one_per_run else ''})")
        out.append((seed, m.parent))
    return out


def _get(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def expected(user: dict, overrides: list[str], arm: Arm, seed: int, rec: dict) -> dict:
    """The config the recipe gives ``arm`` at ``seed``; the values the plan could not know here
    (:data:`~.arms.UNKNOWN`: they follow from the train split's size) and, for one target per run,
    the run's target input are taken from the recorded config ``rec``."""
    known = [o for o in arm.overrides if not o.endswith(f"={UNKNOWN}")]
    taken = [f"{o.split('=', 1)[0]}={json.dumps(_get(rec, o.split('=', 1)[0]))}"
             for o in arm.overrides if o.endswith(f"={UNKNOWN}")]
    if arm.one_per_run:
        taken.append(f"tasks={json.dumps(rec['tasks'])}")
    return arm_config(user, overrides, replace(arm, overrides=(*known, *taken, f"seed={seed}")))


def check_run(user: dict, overrides: list[str], arm: Arm, seed: int, d: Path) -> None:
    """A recorded run is what it claims to be, or a one-line :class:`UserError`: its metrics are a
    JSON object, its config.yaml is stamped with its own fingerprint, and that fingerprint is the one
    of ``arm`` at ``seed`` on the recipe (``user`` and ``overrides``: :func:`expected`)."""
    run = RunDir(d)
    try:
        metrics = json.loads(run.metrics.read_text())
        rec = C.resolve(parse_yaml(run.config.read_text(), f"config file {run.config}"))
    except (OSError, ValueError) as e:
        raise UserError(f"{d}: not a readable run record ({e.__class__.__name__}: {str(e)[:80]})") from e
    stamp = run.read_stamp()
    if not isinstance(metrics, dict) or stamp is None or C.experiment_fingerprint(rec) != stamp:
        raise UserError(f"{d}: its metrics, config.yaml and stamp do not belong together (not a run record)")
    if rec["seed"] != seed:
        raise UserError(f"{d}: its config has seed {rec['seed']}, its folder says seed {seed}")
    if arm.one_per_run and (len(rec["tasks"]) != 1 or len(rec["tasks"][0]["targets"] or []) != 1):
        raise UserError(f"{d}: a run of arm {arm.name} attacks one target input")
    if arm.one_per_run:  # the recipe's rate per target input, its own rate
        want = C.resolve(user, overrides)
        rec_rate, per_target = rec["attack"]["poisoning_rate"], recipe_rates(want)[0]
        if abs(rec_rate - per_target) > 1e-9:
            raise UserError(f"{d}: poisoning rate {rec_rate:g}, not the recipe's {per_target:g} per target input")
        cfg = expected(user, overrides, arm, seed, rec)
        cfg["attack"]["poisoning_rate"] = rec_rate
        C.validate(cfg)
    else:
        cfg = expected(user, overrides, arm, seed, rec)
    if C.experiment_fingerprint(cfg) != stamp:
        raise UserError(f"{d}: not a run of arm {arm.name} at seed {seed} on this recipe (fingerprint {stamp}, "
                        f"the recipe's {C.experiment_fingerprint(cfg)})")


def recorded(user: dict, overrides: list[str], record: Path, arms: list[Arm]) -> dict[str, list[Path]]:
    """The checked runs of each arm of ``arms`` that ``record`` holds (:func:`check_run`)."""
    cfg = C.resolve(user, overrides)
    seeds = set(cfg["seeds"] or [cfg["seed"]])
    out: dict[str, list[Path]] = {}
    for arm in arms:
        for seed, d in run_dirs(record, arm):
            if seed not in seeds:
                raise UserError(f"{d}: seed {seed} is not one of the recipe's seeds ({', '.join(map(str, sorted(seeds)))})")
            check_run(user, overrides, arm, seed, d)
            out.setdefault(arm.name, []).append(d)
    return out


def pending(cfg: dict, arms: list[Arm], done: dict[str, list[Path]]) -> list[str]:
    """The queue's arms that ``done`` (:func:`recorded`) does not complete, in the queue's order."""
    by_name = {a.name: a for a in arms}
    return [n for n in queue(cfg, arms) if len(done.get(n, [])) < planned_runs(cfg, by_name[n])]


def seconds_per_run(runs: dict[str, list[Path]]) -> float | None:
    """The mean wall time of a recorded run (crafting, pre-training and evaluation, as its metrics
    and timings hold them), or None where no record says."""
    times = []
    for dirs in runs.values():
        for d in dirs:
            run = RunDir(d)
            m = run.read_metrics()
            t = run.stage_seconds(m) if m is not None else {}
            parts = [t.get(k) for k in ("craft", "pretrain_poisoned", "evaluate")]
            if parts and all(isinstance(p, (int, float)) for p in parts):
                times.append(float(sum(parts)))
    return sum(times) / len(times) if times else None


def copy_records(record: Path, out: Path, runs: dict[str, list[Path]]) -> int:
    """Each recorded run's files into the same place under ``out`` (the claims folder), so that the
    arms' runners find them finished (each arm's folder marked as the toolkit's, as its runner
    marks it); a file already there with other content is refused."""
    n = 0
    for name, dirs in runs.items():
        claim_dir(out / "arms" / name, "an arm's folder in the claims folder (--out)")  # the arm's runner claims it too
        for d in dirs:
            for f in sorted(p for p in d.rglob("*") if p.is_file()):
                target = out / f.relative_to(record)
                text = f.read_text()
                if target.is_file():
                    if target.read_text() != text:
                        raise UserError(f"{target} differs from the recorded {f}: the claims folder (--out) holds "
                                        "another run there; give a new --out")
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                write_text(target, text)
            n += 1
    return n


def run_campaign(user: dict, overrides: list[str], out: Path, record: Path, jobs: int = 1,
                 budget_s: float | None = None, log: Callable[[str], None] = print):
    """The next arms of the queue that ``record`` does not complete, in its order, into ``out``
    within ``budget_s``; the recorded runs are copied in first and not run again. Where the budget
    is below the mean recorded run's time (:func:`seconds_per_run`) nothing starts. Returns the
    table's rows (:func:`~.run_claims`), or None where nothing ran."""
    from . import run_claims

    cfg = C.resolve(user, overrides)
    arms = plan(cfg)
    done = recorded(user, overrides, record, arms)
    copied = copy_records(record, out, done)
    todo = pending(cfg, arms, done)
    log(f"claims: campaign: {copied} recorded run(s) in {record}; next: {', '.join(todo) if todo else 'nothing (the queue is done)'}")
    if not todo:
        return None
    per_run = seconds_per_run(done)
    if budget_s is not None and per_run is not None and budget_s < per_run:
        log(f"claims: campaign: budget of {budget_s:.0f}s is below a recorded run's {per_run:.0f}s; nothing started")
        return None
    return run_claims(user, overrides, out, todo, log=log, jobs=jobs, budget_s=budget_s, order=todo)
