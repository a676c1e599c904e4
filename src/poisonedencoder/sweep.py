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
    cosine = all(r.get("cosine_poisoned") is not None for r in results)
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    if numeric:
        ax.plot(xs, [r["ASR"] for r in results], "o-", label="ASR (poisoned encoder)")
        ax.plot(xs, [r["clean_ASR"] for r in results], "s--", label="ASR of the clean encoder")
        ax.plot(xs, [r["PA"] for r in results], "^:", label="PA")
        ax.plot(xs, [r["CA"] for r in results], "v:", label="CA")
        if cosine:  # the finer signal when ASR sits at its floor (few target inputs)
            ax.plot(xs, [r["cosine_poisoned"] for r in results], "d-.", label="target-class cosine (poisoned)")
        if min(xs) > 0 and max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
    else:  # categories (attacks, algorithms, defenses): bars of ASR and PA, the clean encoder's ASR as chance line
        pos = list(range(len(xs)))
        ax.bar([p - 0.2 for p in pos], [r["ASR"] for r in results], 0.4, label="ASR (poisoned encoder)")
        ax.bar([p + 0.2 for p in pos], [r["PA"] for r in results], 0.4, label="PA")
        for p, r in zip(pos, results, strict=True):
            ax.hlines(r["clean_ASR"], p - 0.4, p + 0.4, colors="k", linestyles="--",
                      label="ASR of the clean encoder (chance)" if p == 0 else None)
        labels = [str(x) for x in xs]
        long = sum(map(len, labels)) > 6 * len(labels)  # would overlap side by side
        ax.set_xticks(pos, labels, rotation=25 if long else 0, ha="right" if long else "center")
    ax.set_xlabel(key)
    _save(fig, ax, out / "sweep.png")
    if not numeric:
        _tradeoff(results, key, cosine, out / "sweep_tradeoff.png")


def _tradeoff(results: list[dict], key: str, cosine: bool, path: Path) -> None:
    """ASR against utility (PA), one point per value; beside it the target inputs' centred cosine
    to their target classes against PA, which still separates values when ASR is at its floor."""
    import matplotlib.pyplot as plt

    panels = [("ASR", "ASR", "clean_ASR", "ASR of the clean encoder")]
    if cosine:
        panels.append(("cosine_poisoned", "target-class cosine (centred)",
                       "cosine_clean", "clean encoder"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), dpi=120, squeeze=False)
    for ax, (col, label, chance, chance_label) in zip(axes[0], panels, strict=True):
        seen: dict = {}
        for r in results:
            ax.scatter(r["PA"], r[col], s=30)
            at = (round(r["PA"], 3), round(r[col], 2))  # labels of coinciding points stack downwards
            seen[at] = seen.get(at, -1) + 1
            ax.annotate(str(r[key]), (r["PA"], r[col]), textcoords="offset points",
                        xytext=(4, 4 - 9 * seen[at]), fontsize=7)
        ax.axhline(max(r[chance] for r in results), color="k", ls="--", lw=0.8, label=chance_label)
        ax.set_xlabel("PA (utility of the poisoned or defended encoder)")
        ax.set_ylabel(label)
        if col != "ASR":
            top = max(max(r[col] for r in results), max(r[chance] for r in results))
            ax.set_ylim(min(0.0, min(r[col] for r in results)) - 0.02, top * 1.25 + 0.02)
    _save(fig, axes[0][0], path, panels=axes[0][1:])


def _save(fig, ax, path: Path, panels=()) -> None:
    import matplotlib.pyplot as plt

    ax.set_ylim(-0.02, 1.02)
    for a in (ax, *panels):
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
