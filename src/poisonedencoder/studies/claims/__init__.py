"""The paper's claims, measured by one command: ``poisonedencoder claims [RECIPE] --out DIR``.

Runs every arm of :func:`arms.plan` on the recipe (resuming what is done), then reads every
finished run back, pairs arms on the same target inputs and writes one row per claim
(:mod:`.rows`) with a verdict by the rules of :mod:`.verdicts`: ``DIR/claims.md``,
``DIR/claims.json``, and the table on standard output. ``only`` restricts the runs to some arms,
named one by one or by group (``race``: the arms race, :mod:`.race`; the table always shows every row).

Reading is apart from running: :func:`read_table` builds the table of what is finished and writes
nothing (``claims --table``); an arm's finished runs are judged whatever this machine holds, and
only an arm with no finished run whose data are absent is "not measurable here".
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ...core.errors import UserError
from ...core.io import write_json, write_text
from . import figures, race
from . import rows as R
from .arm_configs import arm_config, one_per_run_configs
from .arms import (LARGE_CROPS, PER_TARGET_RATES, large_crops_scale, SHARED, UNKNOWN, Arm, missing_data, plan, recipe_rates,
                   select)
from .formats import differences, line
from .results import ArmResult, load
from .records import RECORD, home_as_tilde, record  # noqa: F401 (the package's API)
from .verdicts import Row

__all__ = ["Arm", "SHARED", "UNKNOWN", "plan", "run_claims", "build_rows", "markdown", "read_results", "read_table", "write_table",
           "not_here", "changed_rows", "record"]


def _runner(arm: Arm, cfg: dict, out: Path, log):
    from ..seeds import SeedRuns

    return SeedRuns(cfg, out / "arms" / arm.name, log=log)


def run_claims(user: dict, overrides: list[str], out: str | Path, only: list[str] | None = None,
               log: Callable[[str], None] = print, jobs: int = 1,
               budget_s: float | None = None, executor=None, order: list[str] | None = None) -> list[Row]:
    """Run the arms (all, or ``only``), resumable, then write the table. The datasets are read from
    under the recipe's data root (``data_root`` in ``user`` or ``overrides``, else
    ``POISONEDENCODER_DATA``, else the default: :func:`~poisonedencoder.data.location.data_root`).

    The runs of every arm go into one list in the plan's order, each clean encoder they share
    as a unit of its own just before the first run that needs it
    (:func:`~poisonedencoder.studies.parallel.with_clean_first`), and run ``jobs`` at a time within
    ``budget_s`` seconds (:func:`~poisonedencoder.studies.parallel.run_units`; the table is rewritten
    after each finished run, so a long table shows its rows as they come), or as jobs of ``executor``
    (a :class:`~poisonedencoder.studies.cluster.Cluster`: one job array for the clean encoders, then one
    for the runs, each job bounded by its time limit). The table is written
    whatever finished; an arm whose data are missing or whose settings its dataset refuses is
    skipped with its reason. ``order``: the arms' names in the order their runs go in (the
    campaign's queue: :mod:`.campaign`), else the plan's."""
    from ... import config as C
    from ..parallel import CLEAN, Unit, clean_units, finished, run_units, with_clean_first

    out = Path(out)
    t0 = time.monotonic()
    cfg = C.resolve(user, overrides)
    arms = plan(cfg)
    only = select(arms, only, cfg) if only else None  # arm names, or groups of them (race)
    cfgs = {a.name: arm_config(user, overrides, a) for a in arms if not a.one_per_run}  # every arm checked first
    failed: list[str] = []
    units: list[Unit] = []
    runners, measured = {}, []
    rank = {n: i for i, n in enumerate(order or [])}
    for arm in sorted(arms, key=lambda a: rank.get(a.name, len(rank))):
        if only and arm.name not in only:
            continue
        why = missing_data(arm, cfg)
        if why:
            log(f"claims: skipping {arm.name}: {why}")
            continue
        measured.append(arm.name)
        try:
            if arm.one_per_run:
                ref = _runner(arms[0], cfgs["poisonedencoder"], out, log)
                units += [Unit(one, out / "arms" / arm.name / rel) for rel, one in one_per_run_configs(cfg, ref.runs)]
            else:
                runners[arm.name] = _runner(arm, cfgs[arm.name], out, log)
                units += [Unit(exp.cfg, exp.out) for exp in runners[arm.name].runs]
        except UserError as e:  # one arm's problem (a dataset missing, a budget too large) stops that arm only
            log(f"claims: arm {arm.name} stopped: {e}")
            failed.append(f"{arm.name}: {e}")
    how = f"as {executor.kind} jobs" if executor is not None else f"{jobs} at a time"
    log(f"claims: {len(units)} runs of {len(measured)} arm(s) ({', '.join(measured)}), {how}" + (f", within {budget_s:.0f}s" if budget_s else ""))
    if executor is not None:  # a cluster: the clean encoders as one job array, then the runs as another
        clean = run_units(clean_units(units), log=log, name="claims clean encoders", executor=executor)
        done = run_units(units, log=log, name="claims", executor=executor) if not clean.left else None
        failures = clean.failed + (done.failed if done else [])
    else:  # here: one list, each clean encoder just before the first run that needs it
        def table_so_far(u: Unit) -> None:
            if u.stage != CLEAN:
                write_table(cfg, out, arms)

        done = run_units(with_clean_first(units), jobs, log, budget_s, name="claims", on_done=table_so_far)
        failures = done.failed
    for runner in runners.values():
        if all(exp.dir.metrics.is_file() for exp in runner.runs):
            runner.combine_finished()
    for f in failed + [f"{d}: {why}" for d, why in failures]:
        log(f"claims: not run: {f}")
    not_done = sum(1 for u in units if not finished(u.cfg, u.out))
    if not_done:
        log(f"claims: {not_done} of {len(units)} runs not finished (the table shows what did; the same command resumes)")
    log(f"claims: {time.monotonic() - t0:.0f}s")
    return write_table(cfg, out, arms)


def read_results(cfg: dict, out: Path, arms: list[Arm]) -> dict[str, ArmResult]:
    """Every arm of ``arms`` (the recipe's :func:`plan`) that has at least one finished run."""
    seeds = cfg["seeds"] or [cfg["seed"]]
    _, n = recipe_rates(cfg)
    res = {}
    for arm in arms:
        d = out / "arms" / arm.name
        if d.is_dir():
            r = load(arm, d, seeds, planned=len(seeds) * n if arm.one_per_run else 0)
            if r.runs:
                res[arm.name] = r
    return res


def not_here(cfg: dict, arms: list[Arm]) -> dict[str, str]:
    """Why this machine cannot run an arm of the table, for each such arm of ``arms`` (the recipe's
    :func:`plan`): a dataset it needs is absent (:func:`~.arms.missing_data`), or the recipe has no
    such arm (``two_tasks`` off digits)."""
    why = {a.name: w for a in arms if (w := missing_data(a, cfg))}
    if "two_tasks" not in {a.name for a in arms}:
        why["two_tasks"] = "the recipe is not on digits"
    return why


def build_rows(cfg: dict, res: dict[str, ArmResult], unavailable: dict[str, str]) -> list[Row]:
    """Every row of the table from the arms' results. ``unavailable``: why this machine cannot run
    an arm (:func:`not_here`); a row whose arm has no finished run says so ("not measurable here"),
    one whose arm finished runs is judged on them whatever this machine holds."""
    per_target, _ = recipe_rates(cfg)
    rates = [(r, "poisonedencoder" if abs(r - per_target) < 1e-9 else f"rate_{r:g}") for r in PER_TARGET_RATES]
    rows = [R.targets_per_run(res), R.high_asr(res), R.high_asr(res, "one_per_run"),
            R.beats(res, "vs_icp", "icp", "PoisonedEncoder's ASR is at least 0.2 above ICP's."),
            R.ineffective(res, "witches_brew", "witches_brew", "Witches' Brew (gradient matching) is ineffective "
                          "against contrastive pre-training (default budget)."),
            R.ineffective(res, "witches_brew_paper", "witches_brew_paper", "Witches' Brew is ineffective at the budget "
                          "of its own paper (240 steps, 8 restarts; measured: 240 steps, 1 restart)."),
            R.beats(res, "vs_duplication", "duplication", "(the naive floor) Pairing with reference inputs, not repeating "
                    "the target input, makes the attack: PoisonedEncoder at least 0.2 above target duplication."),
            R.rate_curve(res, rates)]
    rows += [R.transfers(res, m) for m in ("mocov2", "byol", "simsiam")]
    rows += [R.defense(res, d) for d in ("part_hash", "large_crops", "overlapping_views", "drop_disagreeing")]
    if (cfg.get("pretrain") and large_crops_scale(cfg) != LARGE_CROPS) or f"defense_large_crops_{LARGE_CROPS:g}" in res:
        rows.append(R.defense(res, f"large_crops_{LARGE_CROPS:g}"))
    rows += [R.defense(res, d, "finetune_none") for d in ("finetune", "finetune_small")]
    rows.append(R.two_tasks(res, unavailable))
    head = "high_asr_one_per_run" if R.headline(res) == "one_per_run" else "high_asr"
    for r in rows:
        if r.key == head:
            r.claim = "**Headline.** " + r.claim
    rows += [R.dataset_row(res, f"{ds}_{px}px", f"{name} at {px}x{px}", unavailable) for ds, name in (("eurosat", "EuroSAT"),
                                                                                       ("facemask", "Facemask"))
             for px in (16, 32)]
    return rows + race.rows(res)


def command(r: Row) -> str:
    """The command that measures a row (on the default recipe; add the recipe's path for another)."""
    return f"poisonedencoder claims --only {','.join(dict.fromkeys(r.arms))}"


def markdown(rows: list[Row]) -> str:
    """The regime once (the recipe's arm's), then the paper's rows as one table, each saying only
    what of its regime differs; then, under its heading, the arms race: its grid (attacker x
    defense) and its rows."""
    common = next((r.setting for r in rows if r.key == "high_asr" and r.setting), {})
    head = ("| claim | regime, where it differs | measurement (95% intervals) | verdict | command |\n"
            "|---|---|---|---|---|\n")

    def where(r: Row) -> str:
        if not r.setting:
            return "-"
        return differences(r.setting, common) or "as above"

    def table(rs: list[Row]) -> str:
        return head + "".join(f"| {r.claim} | {where(r)} | {r.measurement or '-'} | **{r.verdict}**"
                              f"{': ' + r.why if r.why else ''} | `{command(r)}` |\n" for r in rs)

    paper, arms_race = [r for r in rows if not r.section], [r for r in rows if r.section == race.RACE]
    out = ""
    if common:
        out += ("**Regime of every row**, unless its regime column says what differs: "
                + line(common) + ".\n\n")
    out += table(paper)
    if arms_race:
        out += (f"\n## {race.TITLE}\n\nASR over the pooled target inputs (95% Wilson interval), the filter's recall, "
                f"the verdict; every cell in full below (`poisonedencoder claims --only race`).\n\n"
                + race.grid(arms_race) + "\n" + table(arms_race))
    return out


def text(rows: list[Row]) -> str:
    """The table for a terminal: one block per row."""
    out = []
    for i, r in enumerate(rows):
        if r.section and (i == 0 or rows[i - 1].section != r.section):
            out.append(f"== {race.TITLE} ==" if r.section == race.RACE else f"== {r.section} ==")
        out.append(f"[{r.verdict}] {r.key}: {r.claim}")
        if r.regime:
            out.append(f"    regime: {r.regime}")
        if r.measurement:
            out.append(f"    measured: {r.measurement}")
        if r.why:
            out.append(f"    why: {r.why}")
        out.append(f"    command: {command(r)}")
    return "\n".join(out)


def read_table(cfg: dict, out: Path, arms: list[Arm]) -> list[Row]:
    """The rows of what ``arms`` (the recipe's :func:`plan`) finished under ``out``; reads only."""
    return build_rows(cfg, read_results(cfg, out, arms), not_here(cfg, arms))


def changed_rows(out: Path, rows: list[Row]) -> list[str]:
    """The keys of ``rows`` whose verdict or measurement differs from ``out/claims.json`` (a table
    written from runs that are not under ``out/arms``, or by other code); none without that file."""
    import json

    try:
        was = json.loads((out / "claims.json").read_text())
    except (OSError, ValueError):
        return []
    was = {r.get("key"): (r.get("verdict"), r.get("measurement")) for r in was if isinstance(r, dict)} \
        if isinstance(was, list) else {}
    return [r.key for r in rows if r.key in was and was[r.key] != (r.verdict, r.measurement)]


def write_table(cfg: dict, out: Path, arms: list[Arm], rows: list[Row] | None = None) -> list[Row]:
    """:func:`read_table` (or ``rows``, read already), written: ``out/claims.md``, ``claims.json``,
    ``out/arms_race.png`` once a cell of the arms race has a measurement, and ``out/rate_curve.png``
    (ASR against the rate per target input) once a point of the rate curve has one."""
    rows = read_table(cfg, out, arms) if rows is None else rows
    write_text(out / "claims.md", markdown(rows))
    write_json(out / "claims.json", [{"key": r.key, "claim": r.claim, "arms": list(r.arms), "regime": r.regime,
                                      "measurement": r.measurement, "verdict": r.verdict, "why": r.why,
                                      "numbers": r.numbers, **({"section": r.section} if r.section else {})}
                                     for r in rows])
    race.figure([r for r in rows if r.section == race.RACE], out / "arms_race.png")
    curve = next(r for r in rows if r.key == "rate_curve")
    figures.rate_curve(curve, out / "rate_curve.png", recipe_rates(cfg)[1])
    return rows
