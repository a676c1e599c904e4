"""What running as Slurm jobs costs: the same tiny sweep in-process and as jobs, side by side.

The sweep: ``configs/digits_demo.yaml`` at tiny settings (1 pre-training epoch of 300 inputs,
width 8, 2 downstream epochs, one thread), seed 0, ``--values`` of ``attack.poisoning_rate``:
one clean encoder and one run per value. Each round runs the same command three ways, each a
fresh process with fresh run and cache folders:

  a. in-process: ``poisonedencoder sweep ...`` (the runs one after another);
  b. as jobs one at a time: ``... --slurm PARTITION --slurm-cpus 1 --slurm-max-jobs 1`` (the same
     order of work as a, so b - a is what the jobs add: sbatch, scheduling, a Python start and
     the imports per job, polling sacct);
  c. as jobs, as many at once as the node's CPUs allow: ``... --slurm PARTITION --slurm-cpus 1``.

Rounds alternate a, b, c so that drift hits all three alike; the medians are reported, with
the overhead per job ((b - a) / jobs) and the ratios b / a and c / a. Needs a running Slurm
(``sudo scripts/slurm/start.sh && . /tmp/pe-slurm/env.sh``). Example:

    python benchmarks/slurm_overhead.py --rounds 3 --json slurm_overhead.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "pretrain.epochs=1", "--set", "pretrain_data.num_images=300", "--set", "pretrain.width=8",
        "--set", "downstream.epochs=2", "--set", "attack.num_references=5", "--set", "pretrain.threads=1"]


def processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(cmd: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", default="0.05,0.1,0.2,0.3", help="attack.poisoning_rate values (one run each)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--partition", default="default")
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    runs = len([v for v in args.values.split(",") if v.strip()])
    jobs = runs + 1  # the clean encoder the values share, then one job per value
    ways = {"a_in_process": [], "b_jobs_one_at_a_time": ["--slurm-max-jobs", "1"], "c_jobs_at_once": []}
    times: dict[str, list[float]] = {k: [] for k in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for way, extra in ways.items():
                out = Path(tmp) / f"{way}_{r}"
                cmd = [sys.executable, "-m", "poisonedencoder", "sweep", str(ROOT / "configs" / "digits_demo.yaml"),
                       "--seeds", "0", "--param", "attack.poisoning_rate", "--values", args.values, *TINY,
                       "--out", str(out / "sweep"), "--cache-dir", str(out / "cache")]
                if way != "a_in_process":
                    cmd += ["--slurm", args.partition, "--slurm-cpus", "1", "--slurm-time", "10", *extra]
                times[way].append(timed(cmd))
                print(f"round {r + 1}/{args.rounds}: {way} {times[way][-1]:.1f}s", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"processor": processor(), "cpus": os.cpu_count(), "values": args.values, "runs": runs, "jobs": jobs,
           "rounds": args.rounds, "seconds": {k: [round(x, 1) for x in v] for k, v in times.items()},
           "median_s": {k: round(v, 1) for k, v in med.items()},
           "overhead_per_job_s": round((med["b_jobs_one_at_a_time"] - med["a_in_process"]) / jobs, 1),
           "b_over_a": round(med["b_jobs_one_at_a_time"] / med["a_in_process"], 2),
           "c_over_a": round(med["c_jobs_at_once"] / med["a_in_process"], 2)}
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
