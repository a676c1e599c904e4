"""What a finished (or partly finished) arm measured, read back from its run directories."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..compare import Outcome, outcomes, pool
from ...experiment.metrics import rates_of
from ...experiment.rundir import RunDir
from ...core.stats import mean_ci, paired_mean_difference, rate
from .arms import Arm


@dataclass
class ArmResult:
    arm: Arm
    outcomes: dict[tuple, Outcome]       # every finished target input
    runs: list[dict]                     # the finished single-seed metrics (one per seed, or per target)
    planned_runs: int                    # runs the arm needs (0: not known yet)
    config: dict | None                  # one run's resolved config (for the regime)

    @property
    def done(self) -> bool:
        return bool(self.runs) and len(self.runs) >= self.planned_runs

    @property
    def n(self) -> int:
        return len(self.outcomes)

    def threat(self) -> dict:
        """Poisoning inputs over the clean set (all targets, and per target input) and over the whole
        pre-training set (the mean over runs: equal by construction)."""
        r = [rates_of(m) for m in self.runs]
        return {k: (sum(x[k] for x in r) / len(r) if all(x[k] is not None for x in r) else None)
                for k in ("poisoning_rate", "poisoning_rate_per_target", "poisoning_share")}

    def targets_per_run(self) -> float:
        return sum(m["num_targets"] for m in self.runs) / len(self.runs)

    def seeds(self) -> list[int]:
        return sorted({k[0] for k in self.outcomes})

    def by_seed(self, key: str) -> dict[int, float]:
        """``CA`` or ``PA`` per seed (the mean over a seed's runs where it has several)."""
        vals: dict[int, list[float]] = {}
        for m in self.runs:
            if m.get(key) is not None:
                vals.setdefault(m["_seed"], []).append(m[key])
        return {s: sum(v) / len(v) for s, v in vals.items()}

    def mean_over_seeds(self, key: str) -> dict:
        """The mean over seeds of a rate (CA, PA) with its t interval, cut to [0, 1]."""
        m = mean_ci(list(self.by_seed(key).values()))
        if m.get("ci95"):
            m["ci95"] = [max(0.0, m["ci95"][0]), min(1.0, m["ci95"][1])]
        return m

    def seconds(self, what: str) -> dict:
        """Per run: ``pretrain`` (the poisoned encoder's wall time), ``craft`` or ``evaluate``; mean with t interval."""
        return _not_negative(mean_ci([m["_seconds"][what] for m in self.runs if m["_seconds"].get(what) is not None]))

    def defense(self) -> dict:
        """The defense's report per run (removed inputs, precision, recall, clean data used)."""
        keys = ("removed", "precision", "recall", "clean_data_used", "seconds")
        ds = [m.get("defense") or {} for m in self.runs]
        return {k: mean_ci([d[k] for d in ds if d.get(k) is not None]) for k in keys}

    def detection(self) -> dict:
        """A pre-processing filter's verdicts pooled over the runs (each run's ``defense.json``, as its
        metrics hold it): ``precision`` (flagged poisoning inputs / flagged inputs) and ``recall``
        (flagged poisoning inputs / poisoning inputs), each a count with its 95% Wilson interval,
        ``flagged`` and ``poisons`` per run; ``{}`` where no run scored its verdicts."""
        tp = flagged = poisons = runs = 0
        for m in self.runs:
            d = m.get("defense") or {}
            if d.get("precision") is None or d.get("flagged") is None:
                continue
            runs += 1
            tp += int(round(d["precision"] * d["flagged"]))
            flagged, poisons = flagged + int(d["flagged"]), poisons + int(m["num_poisoning_inputs"])
        if not runs:
            return {}
        return {"precision": rate(tp, flagged), "recall": rate(tp, poisons), "runs": runs,
                "flagged": flagged / runs, "poisons": poisons / runs}

    def total_seconds(self) -> dict:
        """Per run: crafting plus pre-training (which holds a pre-processing filter's time: the
        pre-training set is built, and filtered, inside it), plus the pre-training of a filter's
        encoder on the unfiltered data where the run trained one; mean with t interval."""
        return _not_negative(mean_ci([r["_seconds"]["craft"] + r["_seconds"]["pretrain"] + (r["_seconds"].get("unfiltered") or 0.0)
                                      for r in self.runs
                                      if r["_seconds"].get("craft") is not None and r["_seconds"].get("pretrain") is not None]))

    def unfiltered_seconds(self) -> bool:
        """Whether a run's time holds the pre-training of an encoder on the unfiltered data."""
        return any(r["_seconds"].get("unfiltered") is not None for r in self.runs)


def _not_negative(m: dict) -> dict:
    """A time's t interval, its lower end cut at 0 (a time is not negative)."""
    if m.get("ci95"):
        m["ci95"] = [max(0.0, m["ci95"][0]), m["ci95"][1]]
    return m


def gap(a: ArmResult, clean_key: str = "CA", poisoned_key: str = "PA", other: ArmResult | None = None) -> dict:
    """``clean_key`` of ``a`` minus ``poisoned_key`` of ``other`` (default ``a``) over the seeds both
    ran, with the paired t interval over seeds (e.g. CA - PA)."""
    other = other or a
    x, y = a.by_seed(clean_key), other.by_seed(poisoned_key)
    seeds = sorted(set(x) & set(y))
    return paired_mean_difference([y[s] for s in seeds], [x[s] for s in seeds])


def _run_metrics(d: Path, seed: int) -> dict | None:
    run = RunDir(d)
    m = run.read_metrics()
    if m is None:
        return None
    t = run.stage_seconds(m)
    sec = {"pretrain": t["pretrain_poisoned"], "craft": t["craft"], "evaluate": t["evaluate"],
           "unfiltered": t["pretrain_unfiltered"]}
    return {**m, "_seed": seed, "_seconds": sec}


def load(arm: Arm, d: Path, seeds: list[int], planned: int = 0) -> ArmResult:
    """The finished runs of ``arm`` in ``d`` (``seed_<s>/``, or ``seed_<s>/target_*/`` for one per run)."""
    runs, parts = [], []
    for s in seeds:
        seed_dir = RunDir(d).seed(s).path
        dirs = sorted(seed_dir.glob("target_*")) if arm.one_per_run else [seed_dir]
        for rd in dirs:
            m = _run_metrics(rd, s)
            if m is not None:
                runs.append(m)
                parts.append(outcomes(m, s))
    cfg = None
    if runs:
        from ...config.files import parse_yaml

        first = RunDir(d).seed(runs[0]["_seed"])
        cfg_file = next(iter(sorted(RunDir(t).config for t in first.path.glob("target_*")))) if arm.one_per_run \
            else first.config
        cfg = parse_yaml(cfg_file.read_text(), f"config file {cfg_file}") if cfg_file.is_file() else None
    return ArmResult(arm, pool(parts), runs, planned or (len(seeds) if not arm.one_per_run else 0), cfg)
