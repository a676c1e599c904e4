"""Plot ASR (and the clean encoder's ASR) against the poisoning rate per target input, one
line per label, plus ASR over pre-training epochs, from finished run directories.

    python scripts/asr_curve.py --out docs/cifar10_asr_curve.png \
        random=runs/r3,runs/r30 typical=runs/r30typ,runs/r100typ

Each run directory must hold metrics.json (written by ``poisonedencoder run``, one seed or
several). Error bars: 95% Wilson intervals of k of n target inputs (pooled over seeds).

What it does that ``poisonedencoder claims`` does not: it plots any finished runs, whatever their
recipe; the claims table draws its own rate curve from its records (``claims/figures.py``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _load(run: str) -> dict:
    f = Path(run) / "metrics.json"
    if not f.is_file():
        sys.exit(f"error: {f} does not exist; finish that run first")
    return json.loads(f.read_text())


def _per_target(m: dict) -> float:
    """Poisoning rate per target input (%); a run over seeds counts one seed's target inputs."""
    return 100 * m["poisoning_rate"] / (m["num_targets"] / len(m.get("seeds") or [0]))


def _yerr(values: list, ns: list) -> list:
    """Lengths below and above each rate of its 95% Wilson interval (k = value * n)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from poisonedencoder.core.stats import wilson

    cis = [wilson(round(v * n), n) if n else (v, v) for v, n in zip(values, ns, strict=True)]
    return [[max(0.0, v - lo) for v, (lo, _) in zip(values, cis, strict=True)], [max(0.0, hi - v) for v, (_, hi) in zip(values, cis, strict=True)]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("series", nargs="+", help="LABEL=RUN_DIR[,RUN_DIR...]")
    ap.add_argument("--out", required=True, help="PNG file to write")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a3, a2) = plt.subplots(1, 3, figsize=(12, 3.4), dpi=120)
    for s in args.series:
        if "=" not in s:
            sys.exit(f"error: series {s!r} must look like LABEL=RUN_DIR[,RUN_DIR...]")
        label, runs = s.split("=", 1)
        ms = sorted((_load(r) for r in runs.split(",")), key=lambda m: m["poisoning_rate"])
        ms = sorted(ms, key=_per_target)
        x = [_per_target(m) for m in ms]
        ns = [m["num_targets"] for m in ms]
        line = a1.errorbar(x, [m["ASR"] for m in ms], yerr=_yerr([m["ASR"] for m in ms], ns), fmt="o-", capsize=3,
                           label=f"ASR, {label}").lines[0]
        a1.errorbar(x, [m["clean_ASR"] for m in ms], yerr=_yerr([m["clean_ASR"] for m in ms], ns), fmt="s:", capsize=2,
                    color=line.get_color(), alpha=0.6, label=f"clean ASR, {label}")
        cos = [[t["poisoned_cosine"] for task in m["tasks"] for t in task["targets"]] for m in ms]
        cos0 = [[t["clean_cosine"] for task in m["tasks"] for t in task["targets"]] for m in ms]
        a3.plot(x, [sum(c) / len(c) for c in cos], "o-", color=line.get_color(), label=f"poisoned encoder, {label}")
        a3.plot(x, [sum(c) / len(c) for c in cos0], "s:", color=line.get_color(), alpha=0.6, label=f"clean encoder, {label}")
        for m in ms:
            ot = m["tasks"][0].get("over_training")
            if ot:
                n = len(m["tasks"][0]["targets"])
                a2.errorbar([e["epoch"] for e in ot], [e["ASR"] for e in ot], yerr=_yerr([e["ASR"] for e in ot], [n] * len(ot)),
                            fmt="o-", capsize=2, color=line.get_color(), alpha=0.5 + 0.5 * (m is ms[-1]),
                            label=f"{label}, {_per_target(m):.1f}% per target")
    for a in (a1, a3):
        a.set_xscale("log")
        a.set_xlabel("poisoning rate per target input (%)")
    a1.set_ylabel("ASR")
    a3.set_ylabel("cosine to target class (centred, mean)")
    a2.set_xlabel("pre-training epoch")
    a2.set_ylabel("ASR")
    a3.set_ylim(-0.5, 1.0)
    a3.grid(alpha=0.3)
    a3.legend(fontsize=6)
    for a in (a1, a2):
        a.set_ylim(-0.02, 1.02)
        a.grid(alpha=0.3)
        a.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
