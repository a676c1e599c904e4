"""One table over finished runs of the same configuration with different seeds: each seed's
CA, PA, ASR and clean ASR with 95% Wilson intervals, the pooled ASR over all target inputs of
all seeds (Wilson), the mean over seeds (t interval), ASR over pre-training epochs where the run
kept snapshots, and the wall time of every stage.

    python scripts/seed_table.py runs/gpu/seed_0 runs/gpu/seed_1 runs/gpu/seed_2 --json summary.json

Each directory must hold the ``metrics.json`` of a finished ``poisonedencoder run``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from poisonedencoder.stats import fmt_mean, fmt_rate, mean_ci, rate


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _seconds(path: Path) -> float | None:
    return float(path.read_text().split()[0]) if path.is_file() else None


def summarize_run(run: Path) -> dict:
    m = _read(run / "metrics.json")
    if m is None:
        raise SystemExit(f"error: {run / 'metrics.json'} does not exist; finish that run first")
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    n_test = sum(t.get("num_test_inputs", 0) for t in m["tasks"])
    targets = [x for t in m["tasks"] for x in t["targets"]]
    hits = sum(x["poisoned_prediction"] == x["target_class"] for x in targets)
    clean_hits = sum(x["clean_prediction"] == x["target_class"] for x in targets)
    manifest = _read(run / "poisons" / "manifest.json") or {}
    timing = _read(run / "poisons" / "timing.json") or manifest
    out = {
        "run": str(run), "seed": cfg.get("seed"), "num_targets": len(targets),
        "CA": rate(round(m["CA"] * n_test), n_test) if n_test else {"value": m["CA"]},
        "PA": rate(round(m["PA"] * n_test), n_test) if n_test else {"value": m["PA"]},
        "ASR": rate(hits, len(targets)), "clean_ASR": rate(clean_hits, len(targets)),
        "cosine_clean": [x["clean_cosine"] for x in targets], "cosine_poisoned": [x["poisoned_cosine"] for x in targets],
        "seconds": {"craft": timing.get("craft_seconds"),
                    "pretrain_clean": _seconds(Path(m["encoders"]["clean"]).parent / "seconds.txt"),
                    "pretrain_poisoned": _seconds(run / "encoders" / "poisoned" / "seconds.txt"),
                    "evaluate": m.get("evaluate_seconds")},
        "over_training": [{"epoch": o["epoch"], "ASR": o["ASR"], "PA": o["PA"]}
                          for o in (m["tasks"][0].get("over_training") or [])],
    }
    return out


def summarize(runs: list[Path]) -> dict:
    rows = [summarize_run(r) for r in runs]
    k = sum(r["ASR"]["k"] for r in rows)
    n = sum(r["ASR"]["n"] for r in rows)
    kc = sum(r["clean_ASR"]["k"] for r in rows)
    return {
        "runs": rows,
        "pooled_ASR": rate(k, n), "pooled_clean_ASR": rate(kc, n),
        "mean_over_seeds": {key: mean_ci([r[key]["value"] for r in rows]) for key in ("CA", "PA", "ASR", "clean_ASR")},
        "mean_cosine_clean": mean_ci([c for r in rows for c in r["cosine_clean"]]),
        "mean_cosine_poisoned": mean_ci([c for r in rows for c in r["cosine_poisoned"]]),
    }


def format_summary(s: dict) -> str:
    lines = ["| seed | CA | PA | ASR | clean ASR | craft s | clean pre-train s | poisoned pre-train s | evaluate s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in s["runs"]:
        t = r["seconds"]
        f = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
        lines.append(f"| {r['seed']} | {fmt_rate(r['CA'])} | {fmt_rate(r['PA'])} | {fmt_rate(r['ASR'])} | "
                     f"{fmt_rate(r['clean_ASR'])} | {f(t['craft'])} | {f(t['pretrain_clean'])} | "
                     f"{f(t['pretrain_poisoned'])} | {f(t['evaluate'])} |")
    mo = s["mean_over_seeds"]
    lines += ["", f"pooled ASR over {s['pooled_ASR']['n']} target inputs: {fmt_rate(s['pooled_ASR'])}; "
              f"clean ASR {fmt_rate(s['pooled_clean_ASR'])}",
              f"mean over seeds (95% t): CA {fmt_mean(mo['CA'])}, PA {fmt_mean(mo['PA'])}, ASR {fmt_mean(mo['ASR'])}",
              f"centred cosine to the target class: clean {fmt_mean(s['mean_cosine_clean'], 2)} -> "
              f"poisoned {fmt_mean(s['mean_cosine_poisoned'], 2)}"]
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
        from poisonedencoder.io import write_json

        write_json(args.json, s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
