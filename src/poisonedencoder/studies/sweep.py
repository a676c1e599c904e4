"""Run one experiment per value of one config key; write sweep.csv, sweep.md and plots.

Runs that share pre-training settings share the cached clean encoder, so a sweep over an
attack parameter trains the clean encoder once (per seed). With ``seeds`` (``--seeds 0,1,2``)
every value runs over all seeds (``OUT/<key>=<value>/seed_<s>/``) and reports the pooled
result. Every rate carries its count and 95% Wilson interval, and every value is compared
with a reference value on the same seeds and target inputs (paired): the difference of ASR
with Newcombe's interval and McNemar's exact p, the difference of the mean margin with a paired
t interval. The reference is the value ``none`` where the sweep has one (``defense.name``),
else the first value. Definitions: docs/DESIGN.md, "Uncertainty".
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import config as C
from ..core.errors import UserError
from ..core.folders import claim_dir
from ..experiment.pipeline import Experiment
from .sweep_output import _write
from .sweep_table import markdown_table, summarize

__all__ = ["parse_values", "check_values", "run_sweep", "value_dir", "reference_index", "summarize", "markdown_table"]


def parse_values(text: str) -> list:
    """``--values``: comma-separated YAML values; commas inside brackets belong to the value
    (``[0.2,1.0],[0.4,1.0]``: two lists). A value that is not valid YAML (an unclosed bracket,
    a ``!!python`` tag), a repeated key, too deep nesting or no value at all is a :class:`UserError`."""
    import yaml

    if len(text) > C.MAX_VALUE_CHARS:
        raise UserError(f"sweep --values has {len(text)} characters, more than the {C.MAX_VALUE_CHARS} accepted")
    out = []
    for part in _split_top_level(text):
        if part.strip() == "":
            continue
        try:
            out.append(C.parse_yaml(part, f"sweep --values {C._preview(part, 80)}"))
        except yaml.YAMLError as e:
            raise UserError(f"sweep --values: {C._preview(part, 80)} is not a valid value "
                            f"({C._preview(str(e).splitlines()[0], 120)})") from None
    return check_values(out, f"--values {C._preview(text, 80)}")


def check_values(values: list, given: str = "values") -> list:
    """``values``, unless it is empty: a sweep over no value has nothing to run or to tabulate
    (a :class:`UserError` naming how they were ``given``)."""
    if not values:
        raise UserError(f"sweep {given} holds no value: give at least one, e.g. --values 0.01,0.03,0.1")
    return values


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def run_sweep(user: dict, overrides: list[str], key: str, values: list, out: str | Path, log=print,
              jobs: int = 1, executor=None) -> list[dict]:
    """One run (or one run per seed) per value of ``key``, the table after each value. ``jobs`` > 1:
    every value's runs go into one list, run that many at a time (:mod:`poisonedencoder.studies.parallel`)
    after the clean encoders they share, with the same results as one at a time. ``executor`` (a
    :class:`~poisonedencoder.studies.cluster.Cluster`): the same list as jobs of a cluster, one job array
    for the clean encoders, then one for the runs."""
    from .seeds import SeedRuns

    check_values(values)
    out = claim_dir(out, "sweep directory (--out)")
    rows = []
    for v in values:
        cfg = C.resolve(user, list(overrides) + [f"{key}={v}"])  # validates every value before any work
        rows.append((v, cfg))
    if key in ("seed", "seeds") and any(cfg["seeds"] for _, cfg in rows):
        raise UserError("a sweep over seed cannot also run over seeds; use --seeds alone to replicate a setting")
    if jobs > 1 or executor is not None:
        return _run_parallel(rows, key, out, log, jobs, executor)
    runs = []
    for v, cfg in rows:
        log(f"sweep: {key}={v}" + (f" over seeds {', '.join(map(str, cfg['seeds']))}" if cfg["seeds"] else ""))
        d = out / value_dir(key, v)
        m = (SeedRuns(cfg, d, log=log) if cfg["seeds"] else Experiment(cfg, d, log=log)).run()
        runs.append((v, cfg, m))
        results = summarize(runs, key, reference_index([x for x, _, _ in runs]))
        _write(results, key, out)
    return results


def _run_parallel(rows: list[tuple], key: str, out: Path, log, jobs: int, executor=None) -> list[dict]:
    from .parallel import Unit, clean_units, run_units, with_clean_first
    from .seeds import SeedRuns

    runners = [(v, cfg, SeedRuns(cfg, out / value_dir(key, v), log=log) if cfg["seeds"]
                else Experiment(cfg, out / value_dir(key, v), log=log)) for v, cfg in rows]
    units = [Unit(e.cfg, e.out) for _, _, r in runners for e in (r.runs if isinstance(r, SeedRuns) else [r])]
    how = f"as {executor.kind} jobs" if executor is not None else f"{jobs} at a time"
    log(f"sweep: {len(units)} runs of {len(rows)} values of {key}, {how}")
    if executor is not None:  # a cluster: the clean encoders as one job array, then the runs
        failed = run_units(clean_units(units), log=log, name="sweep (clean encoders)", executor=executor).failed
        failed += run_units(units, log=log, name="sweep", executor=executor).failed
    else:
        failed = run_units(with_clean_first(units), jobs, log, name="sweep").failed
    if failed:
        raise UserError("; ".join(f"{d}: {why}" for d, why in failed))
    runs = [(v, cfg, r.combine_finished() if isinstance(r, SeedRuns) else json.loads(r.dir.metrics.read_text()))
            for v, cfg, r in runners]
    results = summarize(runs, key, reference_index([x for x, _, _ in runs]))
    _write(results, key, out)
    return results


MAX_DIR_NAME = 80


def value_dir(key: str, value) -> str:
    """The folder of one value, inside ``--out``: ``<key>=<value>`` where that is a plain name
    (letters, digits, ``._=-``, no ``..``, at most :data:`MAX_DIR_NAME` characters); otherwise the
    same with every other character replaced by ``_``, cut, and a hash of the whole text appended
    (``data_root=_.._.._escape-3f2a9c1b``), so that no value names a folder elsewhere. sweep.csv
    keeps the value's own text."""
    import hashlib
    import re

    name = f"{key}={value}"
    safe = re.sub(r"[^A-Za-z0-9._=-]", "_", name).replace("..", "_.")
    if safe == name and len(name) <= MAX_DIR_NAME and not name.startswith("."):
        return name
    return f"{safe[:MAX_DIR_NAME - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def reference_index(values: list) -> int:
    """The value every other value is compared with: ``none`` (no defense) if present, else the first."""
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and v.lower() == "none"):
            return i
    return 0
