"""A sweep's files: sweep.csv and sweep.md (:mod:`.sweep_table`), the plot of every rate against
the swept value (sweep.png) and, for values that are categories, ASR against utility
(sweep_tradeoff.png)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..core.errors import is_number
from ..core.io import atomic_write, write_text
from .sweep_table import markdown_table


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
    numeric = all(is_number(x) for x in xs)
    cosine = all(r.get("cosine_poisoned") is not None for r in results)
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    if numeric:  # error bars: 95% Wilson intervals
        ax.errorbar(xs, [r["ASR"] for r in results], yerr=_yerr(results, "ASR"), fmt="o-", capsize=3,
                    label="ASR (poisoned encoder)")
        ax.errorbar(xs, [r["clean_ASR"] for r in results], yerr=_yerr(results, "clean_ASR"), fmt="s--", capsize=3,
                    label="ASR of the clean encoder")
        ax.errorbar(xs, [r["PA"] for r in results], yerr=_yerr(results, "PA"), fmt="^:", capsize=3, label="PA")
        ax.errorbar(xs, [r["CA"] for r in results], yerr=_yerr(results, "CA"), fmt="v:", capsize=3, label="CA")
        if cosine:  # the finer signal when ASR sits at its floor (few target inputs)
            ax.plot(xs, [r["cosine_poisoned"] for r in results], "d-.", label="target-class cosine (poisoned)")
        if min(xs) > 0 and max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
    else:  # categories (attacks, algorithms, defenses): bars of ASR and PA, the clean encoder's ASR as chance line
        pos = list(range(len(xs)))
        ax.bar([p - 0.2 for p in pos], [r["ASR"] for r in results], 0.4, yerr=_yerr(results, "ASR"), capsize=3,
               label="ASR (poisoned encoder)")
        ax.bar([p + 0.2 for p in pos], [r["PA"] for r in results], 0.4, yerr=_yerr(results, "PA"), capsize=3, label="PA")
        for p, r in zip(pos, results, strict=True):
            ax.hlines(r["clean_ASR"], p - 0.4, p + 0.4, colors="k", linestyles="--",
                      label="ASR of the clean encoder (chance)" if p == 0 else None)
        ax.errorbar([p - 0.3 for p in pos], [r["clean_ASR"] for r in results], yerr=_yerr(results, "clean_ASR"),
                    fmt="none", ecolor="k", capsize=2, lw=0.8)
        labels = [str(x) for x in xs]
        long = sum(map(len, labels)) > 6 * len(labels)  # would overlap side by side
        ax.set_xticks(pos, labels, rotation=25 if long else 0, ha="right" if long else "center")
    ax.set_xlabel(key)
    _save(fig, ax, out / "sweep.png")
    if not numeric:
        _tradeoff(results, key, cosine, out / "sweep_tradeoff.png")


def _tradeoff(results: list[dict], key: str, cosine: bool, path: Path) -> None:
    """ASR against utility (PA), one point per value; beside it the target inputs' centred cosine
    to their target classes and their mean margin against PA, which still separate values when ASR
    is at its floor. Error bars: 95% intervals (Wilson for rates, t for the margin)."""
    import matplotlib.pyplot as plt

    panels = [("ASR", "ASR", "clean_ASR", "ASR of the clean encoder")]
    if cosine:
        panels.append(("cosine_poisoned", "target-class cosine (centred)",
                       "cosine_clean", "clean encoder"))
    if all(r.get("margin_poisoned") is not None for r in results):  # with its 95% t interval over target inputs
        panels.append(("margin_poisoned", "target-class margin (logit)", "margin_clean", "clean encoder"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), dpi=120, squeeze=False)
    for ax, (col, label, chance, chance_label) in zip(axes[0], panels, strict=True):
        seen: dict = {}
        for r in results:
            ax.errorbar(r["PA"], r[col], xerr=_yerr([r], "PA"), yerr=_yerr([r], col), fmt="o", ms=5, capsize=2)
            at = (round(r["PA"], 3), round(r[col], 2))  # labels of coinciding points stack downwards
            seen[at] = seen.get(at, -1) + 1
            ax.annotate(str(r[key]), (r["PA"], r[col]), textcoords="offset points",
                        xytext=(4, 4 - 9 * seen[at]), fontsize=7)
        ax.axhline(max(r[chance] for r in results), color="k", ls="--", lw=0.8, label=chance_label)
        ax.set_xlabel("PA (utility of the poisoned or defended encoder)")
        ax.set_ylabel(label)
        if col == "cosine_poisoned":
            top = max(max(r[col] for r in results), max(r[chance] for r in results))
            ax.set_ylim(min(0.0, min(r[col] for r in results)) - 0.02, top * 1.25 + 0.02)
    _save(fig, axes[0][0], path, panels=axes[0][1:])


def _yerr(results: list[dict], k: str):
    """Error bar lengths below and above each value from its 95% interval (0 where none is known)."""
    lo = [max(0.0, r[k] - r[f"{k}_lo"]) if r.get(f"{k}_lo") is not None else 0.0 for r in results]
    hi = [max(0.0, r[f"{k}_hi"] - r[k]) if r.get(f"{k}_hi") is not None else 0.0 for r in results]
    return [lo, hi]


def _save(fig, ax, path: Path, panels=()) -> None:
    import matplotlib.pyplot as plt

    ax.set_ylim(-0.02, 1.02)
    for a in (ax, *panels):
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
