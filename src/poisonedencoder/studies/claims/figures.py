"""The claims table's figure of ASR against the poisoning rate per target input (the rate-curve row)."""
from __future__ import annotations

from pathlib import Path

from .verdicts import Row


def rate_curve(row: Row, path: str | Path, targets_per_run: float | None = None) -> bool:
    """``path`` (PNG): ASR per rate per target input with its 95% Wilson interval, the logistic fit
    and, where fitted, the rate at which ASR reaches the goal with its 95% interval; a second axis
    gives the poisoning inputs of a run over the clean set (``targets_per_run`` times the rate per
    target). Written when the row has at least one point; returns whether it was."""
    pts = [p for p in (row.numbers or {}).get("points", []) if p.get("value") is not None]
    if not pts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ...core.io import atomic_write

    fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=120)
    x = np.array([100 * p["per_target"] for p in pts])
    y = np.array([p["value"] for p in pts])
    lo = y - np.array([p["ci95"][0] for p in pts])
    hi = np.array([p["ci95"][1] for p in pts]) - y
    ax.errorbar(x, y, yerr=[lo, hi], fmt="o", capsize=3, color="C0", label="ASR (95% Wilson)")
    for xi, p in zip(x, pts, strict=True):
        ax.annotate(f"{p['k']}/{p['n']}", (xi, p["value"]), textcoords="offset points", xytext=(6, -10), fontsize=7)
    fit = row.numbers.get("fit")
    if fit:
        grid = np.geomspace(x.min() / 1.5, x.max() * 1.5, 200)
        ax.plot(grid, 1 / (1 + np.exp(-(fit["a"] + fit["b"] * np.log2(grid / 100)))), color="C1", lw=1,
                label="logistic fit")
        if fit.get("x_goal"):
            g, (glo, ghi) = 100 * fit["x_goal"], (100 * v for v in fit["x_goal_ci95"])
            ax.errorbar([g], [fit["goal"]], xerr=[[g - glo], [ghi - g]], fmt="s", color="C3", capsize=3, ms=4,
                        label=f"ASR {fit['goal']:g} at {g:.2f}% [{glo:.2f}, {ghi:.2f}]")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:g}%" for v in x])
    ax.minorticks_off()
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("poisoning inputs per target input, share of the clean set", fontsize=8)
    ax.set_ylabel("ASR", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    if targets_per_run and targets_per_run > 1:
        top = ax.secondary_xaxis("top", functions=(lambda v: v * targets_per_run, lambda v: v / targets_per_run))
        top.set_xticks(x * targets_per_run, [f"{v * targets_per_run:g}%" for v in x])
        top.minorticks_off()
        top.set_xlabel(f"all {targets_per_run:g} target inputs of a run together", fontsize=8)
        top.tick_params(labelsize=7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return True
