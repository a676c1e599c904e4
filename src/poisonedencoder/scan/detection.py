"""How well a filter's scores find poisoning inputs, given the truth (a crafted set's manifest).

Conventions: a higher score means more suspect; an input is flagged when its score is above a
threshold (``score > t``), unless the verdicts are given as they are (part_hash flags
``score >= min_group``, the oracle's budget the top share).

- **AUROC**: the chance that a random poisoning input scores above a random clean input, ties
  counting one half (Mann-Whitney's U / (P N)). Its 95% interval is DeLong's (DeLong, DeLong and
  Clarke-Pearson 1988): the variance from the structural components (each input's share of the
  pairs it wins), normal approximation, clipped to [0, 1]. It needs two inputs of each kind; at an
  AUROC of exactly 0 or 1 the variance estimate is 0 and the interval is the point itself (with few
  inputs, read it with the counts).
- **TPR at a false-positive rate** ``a``: the threshold is the empirical clean quantile, the
  ``(floor(a N) + 1)``-th largest clean score, so that at most ``a N`` clean inputs lie above it
  (fewer where clean scores tie there); the TPR is the share of poisoning inputs above it, with a
  95% Wilson interval over the ``P`` poisoning inputs; the false-positive rate it reaches is given
  too. This uses the truth: it is what a defender who knew the clean scores could reach.
- **At a threshold** (the scan's, set without the truth): precision (poisoning inputs among the
  flagged), recall (flagged among the poisoning inputs) and the false-positive rate (flagged
  among the clean inputs), each a count with its 95% Wilson interval.
"""
from __future__ import annotations

from statistics import NormalDist
from typing import Sequence

import numpy as np

from ..core.stats import rate

FPR_GOALS = (0.01, 0.05)


def _split(scores: Sequence[float], is_poison: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    s, p = np.asarray(scores, float), np.asarray(is_poison, bool)
    if s.shape != p.shape:
        raise ValueError(f"scores {s.shape} and is_poison {p.shape} differ in shape")
    return s[p], s[~p]


def auroc(scores: Sequence[float], is_poison: Sequence[bool], confidence: float = 0.95) -> dict:
    """``{"value", "ci95", "method", "n_poison", "n_clean"}``; ``value`` is None without inputs of
    both kinds, ``ci95`` None with fewer than two of either (module docstring)."""
    from scipy.stats import rankdata

    pos, neg = _split(scores, is_poison)
    m, n = pos.size, neg.size
    out = {"value": None, "ci95": None, "method": "DeLong", "n_poison": int(m), "n_clean": int(n)}
    if m == 0 or n == 0:
        return out
    both = rankdata(np.concatenate([pos, neg]))  # midranks: ties count one half
    v10 = (both[:m] - rankdata(pos)) / n          # per poisoning input: share of clean inputs below it
    v01 = 1 - (both[m:] - rankdata(neg)) / m      # per clean input: share of poisoning inputs above it
    auc = float(v10.mean())
    out["value"] = auc
    if m >= 2 and n >= 2:
        se = float(np.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n))
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        out["ci95"] = [max(0.0, auc - z * se), min(1.0, auc + z * se)]
    return out


def roc_points(scores: Sequence[float], is_poison: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve: false- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    s, p = np.asarray(scores, float), np.asarray(is_poison, bool)
    order = np.argsort(-s, kind="stable")
    s, p = s[order], p[order]
    last = np.r_[np.diff(s) != 0, True]  # the last input of each run of equal scores
    tp, fp = np.cumsum(p)[last], np.cumsum(~p)[last]
    P, N = max(int(p.sum()), 1), max(int((~p).sum()), 1)
    return np.r_[0.0, fp / N], np.r_[0.0, tp / P]


def tpr_at_fpr(scores: Sequence[float], is_poison: Sequence[bool], fpr: float) -> dict:
    """``{"fpr_goal", "threshold", "tpr", "fpr"}`` (``tpr``, ``fpr``: counts with Wilson intervals)
    at the empirical clean quantile for ``fpr`` (module docstring); None without both kinds."""
    pos, neg = _split(scores, is_poison)
    if pos.size == 0 or neg.size == 0:
        return {"fpr_goal": fpr, "threshold": None, "tpr": None, "fpr": None}
    k = int(np.floor(fpr * neg.size + 1e-9))
    t = float(np.sort(neg)[::-1][min(k, neg.size - 1)])
    return {"fpr_goal": fpr, "threshold": t, "tpr": rate(int((pos > t).sum()), pos.size),
            "fpr": rate(int((neg > t).sum()), neg.size)}


def at_threshold(is_poison: Sequence[bool], verdicts: Sequence[bool]) -> dict:
    """Precision, recall and false-positive rate of ``verdicts`` (counts with Wilson intervals)."""
    p, v = np.asarray(is_poison, bool), np.asarray(verdicts, bool)
    tp, fp = int((v & p).sum()), int((v & ~p).sum())
    return {"flagged": int(v.sum()), "precision": rate(tp, int(v.sum())), "recall": rate(tp, int(p.sum())),
            "fpr": rate(fp, int((~p).sum()))}


def detection(scores: Sequence[float], is_poison: Sequence[bool], threshold: float | None = None,
              verdicts: Sequence[bool] | None = None) -> dict:
    """Every detection metric of one filter's ``scores`` against the truth ``is_poison``:
    ``{"n_poison", "n_clean", "auroc", "tpr_at_fpr": {"0.01": ..., "0.05": ...}, "at_threshold"}``.
    ``at_threshold`` (precision, recall, FPR) is of ``verdicts`` if given, else of
    ``scores > threshold``; None with neither."""
    s, p = np.asarray(scores, float), np.asarray(is_poison, bool)
    if verdicts is None and threshold is not None:
        verdicts = s > threshold
    out = {"n_poison": int(p.sum()), "n_clean": int((~p).sum()), "auroc": auroc(s, p),
           "tpr_at_fpr": {f"{a:g}": tpr_at_fpr(s, p, a) for a in FPR_GOALS},
           "at_threshold": None if verdicts is None else {"threshold": threshold, **at_threshold(p, verdicts)}}
    return out
