"""The same command under two source trees of this toolkit, side by side: does a change make a run
slower? Rounds alternate which tree goes first; each run has a fresh cache and run folder, so
nothing is reused. Prints each round's wall times, the ratio b / a per round, and its mean with a
95% t interval over rounds. Example (this checkout against the tree of an older commit):

    git worktree add ../base <commit>
    python benchmarks/compare_trees.py --a ../base/src --b src --rounds 3 -- demo
    python benchmarks/compare_trees.py --a ../base/src --b src --rounds 3 -- \\
        run configs/digits_works.yaml --set seeds=null --set pretrain.epochs=30

The command is what follows ``--``, given to ``python -m poisonedencoder`` with ``--out`` and
``--cache-dir`` added. Run it on an otherwise idle machine: the ratio is only as steady as the load.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(src: Path, command: list[str], work: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(src.resolve()), PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "poisonedencoder", *command, "--out", str(work / "out"),
                        "--cache-dir", str(work / "cache")], env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"error: the command failed under {src}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return took


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("error: give the command after --, e.g. -- demo", file=sys.stderr)
        return 2
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="source folder of the reference tree (holding poisonedencoder/)")
    ap.add_argument("--b", required=True, help="source folder of the tree under test")
    ap.add_argument("--rounds", type=int, default=3)
    args, command = ap.parse_args(argv[:cut]), argv[cut + 1:]
    for s in (args.a, args.b):
        if not (Path(s) / "poisonedencoder" / "__init__.py").is_file():
            print(f"error: {s} holds no poisonedencoder package", file=sys.stderr)
            return 2
    from poisonedencoder.ssl.precision import cpu_name

    print(f"processor: {cpu_name()}, {os.cpu_count()} cores; command: {' '.join(command)}")
    ratios = []
    for k in range(args.rounds):
        times = {}
        for name in (("a", "b") if k % 2 == 0 else ("b", "a")):
            with tempfile.TemporaryDirectory() as tmp:
                times[name] = run_once(Path(getattr(args, name)), command, Path(tmp))
        ratios.append(times["b"] / times["a"])
        print(f"round {k + 1}: a {times['a']:.1f} s, b {times['b']:.1f} s, b / a {ratios[-1]:.3f}", flush=True)
    import numpy as np
    from scipy import stats

    m = float(np.mean(ratios))
    if len(ratios) > 1:
        half = float(stats.t.ppf(0.975, len(ratios) - 1) * np.std(ratios, ddof=1) / np.sqrt(len(ratios)))
        print(f"b / a: {m:.3f} [{m - half:.3f}, {m + half:.3f}] (mean over {len(ratios)} rounds, 95% t interval)")
    else:
        print(f"b / a: {m:.3f} (one round: no interval)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
