"""Run one experiment per value of one config key; write sweep.csv and an ASR plot.

Runs that share pre-training settings share the cached clean encoder, so a sweep over an
attack parameter trains the clean encoder once.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from . import config as C
from .io import atomic_write, write_text
from .pipeline import Experiment


def parse_values(text: str) -> list:
    import yaml

    return [yaml.safe_load(v) for v in text.split(",") if v.strip() != ""]


def run_sweep(user: dict, overrides: list[str], key: str, values: list, out: str | Path, log=print) -> list[dict]:
    out = Path(out)
    rows = []
    for v in values:
        cfg = C.resolve(user, list(overrides) + [f"{key}={v}"])  # validates every value before any work
        rows.append((v, cfg))
    results = []
    for v, cfg in rows:
        log(f"sweep: {key}={v}")
        m = Experiment(cfg, out / f"{key}={v}", log=log).run()
        results.append({key: v, "CA": m["CA"], "PA": m["PA"], "ASR": m["ASR"], "clean_ASR": m["clean_ASR"],
                        "poisoning_rate": m["poisoning_rate"], "num_targets": m["num_targets"],
                        "cosine_clean": _mean(t["mean_cosine_clean"] for t in m["tasks"]),
                        "cosine_poisoned": _mean(t["mean_cosine_poisoned"] for t in m["tasks"]),
                        **{f"defense_{k}": m.get("defense", {}).get(k)
                           for k in ("removed", "precision", "recall", "clean_data_used")}})
        _write(results, key, out)
    return results


def markdown_table(results: list[dict], key: str) -> str:
    """The sweep as a Markdown table: CA, PA, ASR, the clean encoder's ASR, the target-class cosine
    and, where a defense ran, what it removed, how well, and the clean data it used."""
    def f(v, nd=3):
        return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

    defended = any(r.get("defense_removed") is not None or r.get("defense_clean_data_used") for r in results)
    head = [key, "CA", "PA", "ASR", "clean ASR", "centred cos. (clean -> poisoned)"]
    if defended:
        head += ["removed", "precision", "recall", "clean data used"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [str(r[key]), f(r["CA"]), f(r["PA"]), f(r["ASR"], 2), f(r["clean_ASR"], 2),
               f"{f(r.get('cosine_clean'), 2)} -> {f(r.get('cosine_poisoned'), 2)}"]
        if defended:
            row += [f(r.get("defense_removed")), f(r.get("defense_precision")), f(r.get("defense_recall")),
                    f(r.get("defense_clean_data_used"))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return round(sum(v) / len(v), 4) if v else None


def _write(results: list[dict], key: str, out: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(results[0]))
    w.writeheader()
    w.writerows(results)
    write_text(out / "sweep.csv", buf.getvalue())
    write_text(out / "sweep.md", markdown_table(results, key))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r[key] for r in results]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    if numeric:
        ax.plot(xs, [r["ASR"] for r in results], "o-", label="ASR (poisoned encoder)")
        ax.plot(xs, [r["clean_ASR"] for r in results], "s--", label="ASR of the clean encoder")
        ax.plot(xs, [r["PA"] for r in results], "^:", label="PA")
        ax.plot(xs, [r["CA"] for r in results], "v:", label="CA")
    else:  # categories (attacks, algorithms): bars of ASR and PA, the clean encoder's ASR as chance line
        pos = list(range(len(xs)))
        ax.bar([p - 0.2 for p in pos], [r["ASR"] for r in results], 0.4, label="ASR (poisoned encoder)")
        ax.bar([p + 0.2 for p in pos], [r["PA"] for r in results], 0.4, label="PA")
        for p, r in zip(pos, results):
            ax.hlines(r["clean_ASR"], p - 0.4, p + 0.4, colors="k", linestyles="--",
                      label="ASR of the clean encoder (chance)" if p == 0 else None)
        ax.set_xticks(pos, [str(x) for x in xs])
    ax.set_xlabel(key)
    _save(fig, ax, out / "sweep.png")
    if not numeric:  # the trade-off: ASR against utility (PA), one point per value
        fig, ax = plt.subplots(figsize=(4.6, 3.6), dpi=120)
        for r in results:
            ax.scatter(r["PA"], r["ASR"], s=30)
            ax.annotate(str(r[key]), (r["PA"], r["ASR"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(max(r["clean_ASR"] for r in results), color="k", ls="--", lw=0.8, label="ASR of the clean encoder")
        ax.set_xlabel("PA (utility of the poisoned or defended encoder)")
        ax.set_ylabel("ASR")
        _save(fig, ax, out / "sweep_tradeoff.png")


def _save(fig, ax, path: Path) -> None:
    import matplotlib.pyplot as plt

    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
