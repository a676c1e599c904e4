"""Uncertainty of the reported rates: Wilson score intervals, intervals over seeds, paired tests.

Definitions (docs/DESIGN.md, "Uncertainty"):

* A rate of ``k`` successes in ``n`` trials (ASR: ``k`` of ``n`` target inputs classified as
  their target class; CA / PA: correct test inputs) gets the Wilson score interval at 95%.
* A quantity measured once per seed gets the mean over seeds with a Student-t interval
  (``n - 1`` degrees of freedom); with one seed the interval is undefined (``None``).
* Two settings that share seeds and target inputs are compared pairwise: McNemar's exact test
  on the discordant target inputs (flipped under one setting only) for ASR, and a paired t
  interval for a per-target continuous measure (the margin).

``scipy.stats`` does the distribution work (binomial test, t quantiles).
"""
from __future__ import annotations

import math
from typing import Sequence

def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n`` trials (``(nan, nan)`` for ``n = 0``).

    >>> [round(x, 4) for x in wilson(0, 10)]
    [0.0, 0.2775]
    """
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must lie in [0, n={n}]")
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (max(0.0, float(ci.low)), min(1.0, float(ci.high)))


def rate(k: int, n: int) -> dict:
    """A rate with its count and 95% Wilson interval: ``{"value", "k", "n", "ci95"}``."""
    lo, hi = wilson(k, n)
    return {"value": (k / n) if n else None, "k": int(k), "n": int(n),
            "ci95": [round(lo, 4), round(hi, 4)] if n else None}


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean of ``values`` with a Student-t interval (``ci95`` is ``None`` for fewer than 2 values)."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    n = len(v)
    if n == 0:
        return {"mean": None, "n": 0, "ci95": None, "sd": None}
    m = sum(v) / n
    if n < 2:
        return {"mean": m, "n": 1, "ci95": None, "sd": None}
    from scipy.stats import t

    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": m, "n": n, "ci95": [m - half, m + half], "sd": sd}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` pairs that succeed under A only and ``c`` under
    B only (a binomial test of ``b`` in ``b + c`` at 1/2); 1.0 when there is no discordant pair."""
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(int(b), int(b + c), 0.5).pvalue)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict:
    """Mean of ``b - a`` over pairs with its t interval (``a``, ``b``: the same units, same order)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    return mean_ci([y - x for x, y in zip(a, b, strict=True)])


def fmt_rate(r: dict) -> str:
    """``0.300 [0.108, 0.603] (3/10)``."""
    if r.get("value") is None:
        return "-"
    lo, hi = r["ci95"]
    return f"{r['value']:.3f} [{lo:.3f}, {hi:.3f}] ({r['k']}/{r['n']})"


def fmt_mean(m: dict, digits: int = 3) -> str:
    """``0.412 ± 0.031 (n=3)``: the half-width of the 95% t interval; no ``±`` for one value."""
    if m.get("mean") is None:
        return "-"
    if m["ci95"] is None:
        return f"{m['mean']:.{digits}f} (n={m['n']})"
    half = (m["ci95"][1] - m["ci95"][0]) / 2
    return f"{m['mean']:.{digits}f} ± {half:.{digits}f} (n={m['n']})"
