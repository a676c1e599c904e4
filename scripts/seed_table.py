"""One table over finished runs of the same configuration with different seeds, run one by one
(as benchmarks/gpu_attack.sh does, so that each device call can hold one seed): the table that
``poisonedencoder run --seeds`` prints (per seed, pooled and mean over seeds, with 95%
intervals and margins), plus the wall time of every stage and ASR over pre-training epochs where
the runs kept snapshots.

    python scripts/seed_table.py runs/gpu/seed_0 runs/gpu/seed_1 runs/gpu/seed_2 --json summary.json

Each directory must hold the ``metrics.json`` of a finished ``poisonedencoder run``.

What it does that ``run --seeds`` and ``claims`` do not: it pools seeds that were run as separate
commands (one per device call), with the same definitions.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _stage_seconds(run: Path, m: dict) -> dict:
    from poisonedencoder.experiment.rundir import RunDir

    t = RunDir(run).stage_seconds(m)
    return {k: t[k] for k in ("craft", "pretrain_clean", "pretrain_poisoned", "evaluate")}


def summarize(runs: list[Path]) -> dict:
    """The seeds' runs pooled by :func:`poisonedencoder.studies.seeds.combine` (the same numbers that
    ``poisonedencoder run --seeds`` writes), plus each run's stage times and ASR over training."""
    import yaml

    from poisonedencoder.experiment.rundir import RunDir
    from poisonedencoder.studies.seeds import combine

    per_seed, seeds = [], []
    for run in runs:
        rd = RunDir(run)
        m = rd.read_metrics()
        if m is None:
            raise SystemExit(f"error: {rd.metrics} does not exist; finish that run first")
        per_seed.append(m)
        seeds.append(int(yaml.safe_load(rd.config.read_text())["seed"]))
    combined = combine(per_seed, seeds)
    combined["runs"] = [{"run": str(r), "seed": s, "seconds": _stage_seconds(r, m),
                         "over_training": [{"epoch": o["epoch"], "ASR": o["ASR"], "PA": o["PA"]}
                                           for o in (m["tasks"][0].get("over_training") or [])]}
                        for r, s, m in zip(runs, seeds, per_seed, strict=True)]
    return combined


def format_summary(s: dict) -> str:
    from poisonedencoder.experiment.report import format_seeds_table

    f = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
    lines = [format_seeds_table(s), "", "| seed | craft s | clean pre-train s | poisoned pre-train s | evaluate s |",
             "|---|---|---|---|---|"]
    for r in s["runs"]:
        t = r["seconds"]
        lines.append(f"| {r['seed']} | {f(t['craft'])} | {f(t['pretrain_clean'])} | {f(t['pretrain_poisoned'])} | "
                     f"{f(t['evaluate'])} |")
    epochs = sorted({o["epoch"] for r in s["runs"] for o in r["over_training"]})
    if epochs:
        lines += ["", "| epoch | " + " | ".join(f"ASR seed {r['seed']}" for r in s["runs"]) + " |",
                  "|---|" + "---|" * len(s["runs"])]
        for e in epochs:
            cells = []
            for r in s["runs"]:
                v = [o["ASR"] for o in r["over_training"] if o["epoch"] == e]
                cells.append(f"{v[0]:.2f}" if v and v[0] is not None else "-")
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="finished run directories (one per seed)")
    ap.add_argument("--json", help="also write the summary as JSON here")
    args = ap.parse_args(argv)
    s = summarize([Path(r) for r in args.runs])
    print(format_summary(s))
    if args.json:
        from poisonedencoder.core.io import write_json

        write_json(args.json, s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
