"""Seeds as an axis: one experiment per seed in ``OUT/seed_<s>/``, one combined result in ``OUT/``.

Every random choice of an experiment derives from ``cfg["seed"]``: the target inputs and their
target classes, the reference inputs, the poisoning inputs' layout and order, the clean
pre-training subset, the encoders' initialisation and augmentation, the downstream training
subset and classifier. So seed ``s`` is an independent replicate, and the clean encoder is
cached per (seed, pre-training settings): a sweep over an attack or defense setting trains one
clean encoder per seed, not per value.

The combined ``metrics.json`` keeps the single run's layout (top-level ``CA``, ``PA``, ``ASR``,
``clean_ASR``, ``intervals``, ``margins``, ``tasks`` with every target input, tagged with its
seed) with the *pooled* values: ASR is ``k`` of ``n`` over all target inputs of all seeds, CA
and PA over all test predictions. ``over_seeds`` holds the mean over seeds of each per-seed
value with its t interval, and ``per_seed`` each seed's numbers. Definitions: docs/DESIGN.md,
"Uncertainty".
"""
from __future__ import annotations

from pathlib import Path

from .. import config as C
from ..core.errors import UserError
from ..core.io import write_json
from ..core.folders import check_own_dir, ensure_writable_dir
from ..experiment.metrics import SCORES, margin_summary, rates_of
from ..experiment.rundata import RunLock, holding_run_lock
from ..experiment.rundir import RunDir
from ..core.stats import mean_ci, mean_of_rates, pool_rates, rate

RATES = ("CA", "PA", "ASR", "clean_ASR")


def seed_config(cfg: dict, seed: int) -> dict:
    """The single-seed configuration of one replicate."""
    return {**cfg, "seed": int(seed), "seeds": None}


def seeds_fingerprint(cfg: dict) -> str:
    return C.fingerprint({"seeds": list(cfg["seeds"]),
                          "runs": [C.experiment_fingerprint(seed_config(cfg, s)) for s in cfg["seeds"]]})


class SeedRuns:
    """The stages of :class:`~poisonedencoder.experiment.pipeline.Experiment`, once per seed of ``cfg["seeds"]``."""

    def __init__(self, cfg: dict, out: str | Path, log=print):
        from ..experiment.pipeline import Experiment, _is_main

        if not cfg.get("seeds"):
            raise ValueError("SeedRuns needs cfg['seeds']")
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.dir = RunDir(self.out)
        self.seeds = [int(s) for s in cfg["seeds"]]
        self._main = _is_main()
        self._run_lock = RunLock(self.dir, seeds_fingerprint(cfg), self._claim, log)
        self._check_out_dir()
        self.runs = [Experiment(seed_config(cfg, s), self.dir.seed(s).path, log=log) for s in self.seeds]

    def _check_out_dir(self) -> None:
        check_own_dir(self.out, "run directory (--out)")
        ensure_writable_dir(self.out, "run directory (--out)")  # as a single run does, before any work
        with self._run_lock():
            pass

    def _claim(self) -> None:
        """Under ``OUT/.lock``, each time it is taken (as a single run's
        :class:`~poisonedencoder.experiment.rundata.RunLock`): no single-seed run and no pooled result of
        another configuration or seeds in ``OUT``; the stamp of this one."""
        if self.dir.manifest.exists() or self.dir.encoders.exists():
            raise UserError(f"{self.out} holds a single-seed run; choose another --out for a run over seeds")
        fp = self._run_lock.fingerprint
        self.dir.check_own(fp, "configuration or seeds", (self.dir.metrics,))
        if self._main:
            self.dir.write_stamp(fp, C.dump(self.cfg))

    @holding_run_lock
    def craft(self) -> None:
        for s, exp in zip(self.seeds, self.runs, strict=True):
            self.log(f"seed {s}: craft")
            exp.craft()

    @holding_run_lock
    def pretrain(self, which: str = "both") -> None:
        for s, exp in zip(self.seeds, self.runs, strict=True):
            self.log(f"seed {s}: pretrain")
            exp.pretrain(which)

    @holding_run_lock
    def evaluate(self) -> dict:
        from ..experiment.pipeline import _is_main
        from ..experiment.report import format_table

        per_seed = []
        for s, exp in zip(self.seeds, self.runs, strict=True):
            self.log(f"seed {s}: evaluate")
            per_seed.append(exp.evaluate())
        if not _is_main():
            return {}
        m = self._write_pooled(per_seed)
        self.log(format_table(m))
        return m

    @holding_run_lock
    def combine_finished(self) -> dict:
        """The pooled result from the seeds' finished ``metrics.json`` (runs made elsewhere, e.g. in
        parallel), without evaluating again; written to ``OUT/`` like :meth:`evaluate`."""
        return self._write_pooled(load_seed_metrics(self.out, self.seeds))

    def _write_pooled(self, per_seed: list[dict]) -> dict:
        """:func:`combine` the seeds' metrics into ``OUT/metrics.json`` and ``OUT/report.md``."""
        from ..experiment.report import write_seeds_report

        m = combine(per_seed, self.seeds)
        write_json(self.dir.metrics, m)
        write_seeds_report(self.dir.report, self.cfg, m)
        return m

    @holding_run_lock
    def run(self, jobs: int = 1, executor=None) -> dict:
        """Every seed's run, then the pooled result. ``jobs`` > 1: that many seeds at once, each in a
        worker process (:mod:`poisonedencoder.studies.parallel`), with the same results as one at a time;
        ``executor`` (a :class:`~poisonedencoder.studies.cluster.Cluster`): each seed a job of one job array."""
        if jobs > 1 or executor is not None:
            from .parallel import Unit, run_units
            from ..experiment.report import format_table

            res = run_units([Unit(exp.cfg, exp.out) for exp in self.runs], jobs, self.log, name="seeds",
                            executor=executor)
            if res.failed:
                raise UserError("; ".join(f"{d.name}: {why}" for d, why in res.failed))
            m = self.combine_finished()
            self.log(format_table(m))
            return m
        for s, exp in zip(self.seeds, self.runs, strict=True):
            self.log(f"seed {s}: run -> {exp.out}")
            exp.craft()
            exp.pretrain("both")
        return self.evaluate()


def combine(per_seed: list[dict], seeds: list[int]) -> dict:
    """Pool the single-seed metrics of ``seeds`` into one result (see the module's docstring);
    a pure function of the per-seed ``metrics.json`` contents."""
    if len(per_seed) != len(seeds) or not per_seed:
        raise ValueError("one metrics dict per seed is needed")
    ntasks = {len(m["tasks"]) for m in per_seed}
    if len(ntasks) != 1:
        raise ValueError("the seeds' runs have different numbers of tasks")
    tasks = []
    for ti in range(ntasks.pop()):
        runs = [m["tasks"][ti] for m in per_seed]
        targets = [{"seed": s, **t} for s, r in zip(seeds, runs, strict=True) for t in r["targets"]]
        iv = {k: pool_rates([_rate_of(r, k) for r in runs]) for k in RATES}
        task = {"dataset": runs[0]["dataset"], "num_classes": runs[0]["num_classes"],
                **{k: iv[k]["value"] for k in RATES}, "targets": targets, "intervals": iv,
                "margins": margin_summary(targets),
                "mean_cosine_clean": _mean([t["clean_cosine"] for t in targets]),
                "mean_cosine_poisoned": _mean([t["poisoned_cosine"] for t in targets])}
        tasks.append(task)
    all_t = [t for task in tasks for t in task["targets"]]
    intervals = {"CA": mean_of_rates([t["intervals"]["CA"] for t in tasks]),
                 "PA": mean_of_rates([t["intervals"]["PA"] for t in tasks]),
                 "ASR": pool_rates([t["intervals"]["ASR"] for t in tasks]),
                 "clean_ASR": pool_rates([t["intervals"]["clean_ASR"] for t in tasks])}
    seed_margins = [m.get("margins") or margin_summary([t for task in m["tasks"] for t in task["targets"]])
                    for m in per_seed]
    over_seeds = {k: _clip(mean_ci([m[k] for m in per_seed])) for k in RATES}
    for e in ("clean", "poisoned"):
        for sc in SCORES:
            over_seeds[f"{e}_{sc}"] = mean_ci([sm[e][sc]["mean"] for sm in seed_margins])
    defense = _combine_defense([m.get("defense", {}) for m in per_seed])
    return {
        **{k: intervals[k]["value"] for k in RATES},
        "seeds": list(seeds),
        "num_targets": len(all_t),
        "num_poisoning_inputs": _mean([m["num_poisoning_inputs"] for m in per_seed]),
        "num_clean_inputs": _mean([m["num_clean_inputs"] for m in per_seed]),
        "poisoning_rate": _mean([rates_of(m)["poisoning_rate"] for m in per_seed]),
        "poisoning_rate_per_target": _mean([rates_of(m)["poisoning_rate_per_target"] for m in per_seed]),
        "poisoning_share": _mean([rates_of(m)["poisoning_share"] for m in per_seed]),
        "intervals": intervals,
        "margins": margin_summary(all_t),
        "over_seeds": over_seeds,
        "per_seed": [{"seed": s, "dir": f"seed_{s}", **{k: m[k] for k in RATES},
                      "intervals": {k: _rate_of(m, k) for k in RATES}, "margins": sm,
                      "num_targets": m["num_targets"], **rates_of(m),
                      "config_fingerprint": m.get("config_fingerprint")}
                     for s, m, sm in zip(seeds, per_seed, seed_margins, strict=True)],
        "tasks": tasks,
        "defense": defense,
        "evaluate_seconds": round(sum(m.get("evaluate_seconds", 0) for m in per_seed), 1),
    }


def finished_seed_dirs(out: str | Path) -> list[Path]:
    """The finished single-seed runs (``seed_<s>/`` holding a ``metrics.json``) of a run over seeds."""
    return RunDir(out).finished_seed_dirs()


def load_seed_metrics(out: str | Path, seeds: list[int]) -> list[dict]:
    return RunDir(out).seed_metrics(seeds)


def _rate_of(m: dict, key: str) -> dict:
    """A run's (or a task's) rate with its count; older metrics without ``intervals`` get theirs
    from the value and the number of target inputs (ASR) or none (CA, PA)."""
    iv = m.get("intervals", {}).get(key)
    if iv is not None:
        return iv
    if key in ("ASR", "clean_ASR"):
        n = m.get("num_targets", len(m.get("targets", [])))
        return rate(round(m[key] * n), n) if m.get(key) is not None else rate(0, 0)
    raise ValueError("metrics without intervals (written before they existed) cannot be pooled: rerun 'evaluate'")


def _combine_defense(ds: list[dict]) -> dict:
    out = {"name": ds[0].get("name", "none")}
    for k in ("removed", "precision", "recall", "clean_data_used", "seconds"):
        v = [d[k] for d in ds if d.get(k) is not None]
        if v:
            out[k] = v[0] if all(x == v[0] for x in v) else _mean(v)
    if len(ds) > 1 and any(len(d) > 1 for d in ds):
        out["per_seed"] = ds
    return out


def _clip(m: dict) -> dict:
    """A t interval of a rate, cut to [0, 1]."""
    if m.get("ci95"):
        m = {**m, "ci95": [max(0.0, m["ci95"][0]), min(1.0, m["ci95"][1])]}
    return m


def _mean(v):
    v = [x for x in v if x is not None]
    return sum(v) / len(v) if v else None
