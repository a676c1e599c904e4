"""Runs per hour on a small CPU: one run with every core against one run per core, side by side.

Pre-trains the digits recipe's encoder (``configs/digits_works.yaml``: CNN7 width 16, 16x16,
1,347 clean inputs and 40 poisoning inputs, as one target per run) for ``--epochs`` epochs,
(a) once with ``cores`` threads, then (b) ``cores`` copies at once with one thread each, and
prints the wall time of each and the throughput ratio (runs per hour, b over a). The claims
table's ``--jobs`` takes (b) where it is faster. Example:

    python benchmarks/parallel_runs.py --epochs 30
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(threads: int, epochs: int, out: str) -> None:
    import numpy as np

    from poisonedencoder import config as C
    from poisonedencoder.data import load_dataset
    from poisonedencoder.data.datasets import DEFAULT_CACHE
    from poisonedencoder.ssl.pretrain import PretrainSet, pretrain

    cfg = C.resolve(C.load_yaml(ROOT / "configs" / "digits_works.yaml"),
                    [f"pretrain.epochs={epochs}", f"pretrain.threads={threads}", "pretrain.checkpoint_every=100000"])
    images = load_dataset("digits", 16, None, DEFAULT_CACHE, progress=False).train.images
    poisons = [np.concatenate([a, b], 1) for a, b in zip(images[:40], images[40:80], strict=True)]
    pretrain(PretrainSet.from_images(images, poisons), cfg["pretrain"], out, 0, "cpu", desc="bench", log=lambda _: None)


def timed(procs: list[list[str]]) -> float:
    t0 = time.time()
    running = [subprocess.Popen(p) for p in procs]
    if any(r.wait() for r in running):
        raise SystemExit("a benchmark run failed")
    return time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--one", nargs=3, metavar=("THREADS", "EPOCHS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(int(args.one[0]), int(args.one[1]), args.one[2])
        return 0
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--one"]
        a = timed([cmd + [str(cores), str(args.epochs), f"{tmp}/a"]])
        b = timed([cmd + ["1", str(args.epochs), f"{tmp}/b{i}"] for i in range(cores)])
    res = {"cores": cores, "epochs": args.epochs, "one_run_all_threads_s": round(a, 1),
           f"{cores}_runs_one_thread_each_s": round(b, 1), "runs_per_hour_ratio": round(cores * a / b, 2)}
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
