"""The wall time of every stage of every run in a claims folder (or any folder of runs): crafting,
clean and poisoned pre-training, evaluation, with each stage's sum over runs.

    python benchmarks/stage_times.py runs/claims_gpu --csv stages.csv

A run is a folder holding ``metrics.json``; the clean encoder's time is read from the encoder
folder that the run's metrics name (shared runs of one seed read the same encoder, which is
counted once in the sum).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

STAGES = ("craft", "pretrain_clean", "pretrain_poisoned", "evaluate")


def stage_seconds(run: Path) -> dict:
    from poisonedencoder.experiment.rundir import RunDir

    return {"run": run, **RunDir(run).stage_seconds()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--csv", help="write the table here too")
    a = ap.parse_args(argv)
    root = Path(a.folder)
    if not root.is_dir():
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 2
    from poisonedencoder.experiment.rundir import METRICS, RunDir

    runs = [RunDir(f.parent) for f in sorted(root.rglob(METRICS))]
    rows = [stage_seconds(r.path) for r in runs if r.config.is_file() and r.encoders.is_dir()]
    if not rows:
        print(f"no finished runs under {root}")
        return 0
    fmt = lambda v: "" if v is None else f"{v:.1f}"  # noqa: E731
    lines = ["run," + ",".join(STAGES)] + [
        f"{r['run'].relative_to(root)}," + ",".join(fmt(r[s]) for s in STAGES) for r in rows]
    clean = {r["clean_dir"]: r["pretrain_clean"] for r in rows if r["clean_dir"] and r["pretrain_clean"] is not None}
    sums = {s: sum(r[s] for r in rows if r[s] is not None) for s in STAGES}
    sums["pretrain_clean"] = sum(clean.values())  # a shared clean encoder once
    lines.append("sum (each clean encoder once)," + ",".join(fmt(sums[s]) for s in STAGES))
    print("\n".join(lines))
    if a.csv:
        with open(a.csv, "w", newline="") as fh:
            csv.writer(fh).writerows(line.split(",") for line in lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
