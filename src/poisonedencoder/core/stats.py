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


def wilson_half_width(p: float, n: int, confidence: float = 0.95) -> float:
    """Half the width of the Wilson interval of ``round(p * n)`` successes in ``n`` trials
    (power guidance: how precisely ``n`` target inputs pin down an ASR near ``p``)."""
    lo, hi = wilson(int(round(p * n)), n, confidence)
    return (hi - lo) / 2


def paired_rate_difference(ref: Sequence[bool], val: Sequence[bool], confidence: float = 0.95) -> dict:
    """Paired difference of two rates measured on the same units (target inputs): ``val - ref``.

    ``b``: units that succeed under ``ref`` only, ``c``: under ``val`` only. The interval is
    Newcombe's (1998, method 10) score interval for paired proportions, built from the two Wilson
    intervals and the correlation of the pairs; ``p`` is McNemar's exact test on ``b`` and ``c``.
    """
    if len(ref) != len(val):
        raise ValueError(f"paired samples differ in length: {len(ref)} and {len(val)}")
    n = len(ref)
    if n == 0:
        return {"diff": None, "ci95": None, "b": 0, "c": 0, "n": 0, "p": None}
    a = sum(1 for x, y in zip(ref, val, strict=True) if x and y)
    b = sum(1 for x, y in zip(ref, val, strict=True) if x and not y)
    c = sum(1 for x, y in zip(ref, val, strict=True) if y and not x)
    d = n - a - b - c
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, confidence)
    l2, u2 = wilson(a + c, n, confidence)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    num = a * d - b * c
    num = num - n / 2 if num > n / 2 else (num if num < 0 else 0.0)  # Newcombe's continuity correction of phi
    phi = num / math.sqrt(denom) if denom > 0 else 0.0
    diff = p2 - p1
    lower = diff - math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    upper = diff + math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return {"diff": diff, "ci95": [max(-1.0, lower), min(1.0, upper)], "b": b, "c": c, "n": n,
            "p": mcnemar_exact(b, c)}


def paired_mean_difference(ref: Sequence[float], val: Sequence[float]) -> dict:
    """Mean of ``val - ref`` over pairs with its paired t interval and two-sided p-value
    (``p`` is ``None`` for fewer than 2 pairs; 1.0 or 0.0 when every difference is equal)."""
    out = paired_difference(ref, val)
    n = out["n"]
    if n < 2:
        return {**out, "p": None}
    if out["sd"] == 0:
        return {**out, "p": 1.0 if out["mean"] == 0 else 0.0}
    from scipy.stats import t

    stat = out["mean"] / (out["sd"] / math.sqrt(n))
    return {**out, "p": float(2 * t.sf(abs(stat), n - 1))}


def pool_rates(rates: Sequence[dict]) -> dict:
    """One rate from several: ``sum k`` of ``sum n`` with its Wilson interval."""
    return rate(sum(r["k"] for r in rates), sum(r["n"] for r in rates))


def fmt_ci(value, ci, digits: int = 3) -> str:
    """``0.300 [0.108, 0.603]``; the bare value without an interval, ``-`` without a value."""
    if value is None:
        return "-"
    if ci is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def mean_of_rates(rates: Sequence[dict], confidence: float = 0.95) -> dict:
    """The mean of independent rates (CA over several tasks) with the square-and-add interval of
    their Wilson intervals; one rate is returned as it is. ``k`` and ``n`` are the sums."""
    rates = [r for r in rates if r.get("value") is not None]
    if len(rates) <= 1:
        return dict(rates[0]) if rates else {"value": None, "k": 0, "n": 0, "ci95": None}
    m = len(rates)
    ps = [r["k"] / r["n"] for r in rates]
    cis = [wilson(r["k"], r["n"], confidence) for r in rates]
    mean = sum(ps) / m
    lo = mean - math.sqrt(sum((p - l) ** 2 for p, (l, _) in zip(ps, cis, strict=True))) / m
    hi = mean + math.sqrt(sum((h - p) ** 2 for p, (_, h) in zip(ps, cis, strict=True))) / m
    return {"value": mean, "k": sum(r["k"] for r in rates), "n": sum(r["n"] for r in rates),
            "ci95": [round(max(0.0, lo), 4), round(min(1.0, hi), 4)]}


def logistic_fit(points: list[tuple[float, int, int]], goal: float = 0.8) -> dict | None:
    """Binomial maximum-likelihood fit of ASR = 1 / (1 + exp(-(a + b log2 x))) to (x, k, n) points;
    the x where the fitted ASR reaches ``goal``, with a 95% interval by the delta method on
    log2 x (covariance: the inverse Fisher information). ``None`` with fewer than 3 distinct x.
    The crossing is reported only where the slope's 95% interval lies above 0: where ASR does not
    rise measurably with x, the data do not say where it would reach the goal."""
    import numpy as np
    from scipy.optimize import minimize

    if len({p[0] for p in points}) < 3:  # two values of x determine a curve exactly: nothing is fitted
        return None
    lx = np.log2([p[0] for p in points])
    k = np.array([p[1] for p in points], float)
    n = np.array([p[2] for p in points], float)

    def nll(theta):
        z = theta[0] + theta[1] * lx
        return float(np.sum(n * np.logaddexp(0, z) - k * z))

    res = minimize(nll, np.zeros(2), method="BFGS")
    a, b = res.x
    q = 1 / (1 + np.exp(-(a + b * lx)))
    w = n * q * (1 - q)
    info = np.array([[w.sum(), (w * lx).sum()], [(w * lx).sum(), (w * lx * lx).sum()]])
    cov = np.linalg.pinv(info)
    se_b = float(np.sqrt(max(0.0, cov[1, 1])))
    out = {"a": float(a), "b": float(b), "b_ci95": [float(b - 1.96 * se_b), float(b + 1.96 * se_b)],
           "points": len(points), "goal": goal, "x_goal": None, "x_goal_ci95": None}
    if b - 1.96 * se_b <= 0:
        return out  # ASR does not rise measurably with x in these data: no crossing to report
    t = np.log(goal / (1 - goal))
    l_goal = (t - a) / b
    grad = np.array([-1 / b, -(t - a) / b ** 2])
    se = float(np.sqrt(max(0.0, grad @ cov @ grad)))
    out["x_goal"] = float(np.exp2(min(l_goal, 1023.0)))
    out["x_goal_ci95"] = [float(np.exp2(min(v, 1023.0))) for v in (l_goal - 1.96 * se, l_goal + 1.96 * se)]
    return out
