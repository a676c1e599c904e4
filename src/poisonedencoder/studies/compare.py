"""Target inputs across runs: pool their outcomes, and pair two settings on the same target inputs.

A target input is identified by ``(seed, task, test index, target class)``: the same test input
attacked toward another class is another target. Two settings are compared only on target
inputs both attacked (a paired design: the target inputs' own difficulty cancels): ASR by
Newcombe's interval for a paired difference of proportions and McNemar's exact test, the mean
margin by a paired t interval. Used by ``sweep`` and ``claims``; definitions in docs/DESIGN.md,
"Uncertainty".
"""
from __future__ import annotations

from typing import NamedTuple

from ..core.stats import paired_mean_difference, paired_rate_difference, rate


class Outcome(NamedTuple):
    flipped: bool               # the poisoned encoder's downstream classifier says the target class
    margin: float | None        # its target-class logit minus the largest other logit
    clean_flipped: bool | None  # the same on the clean encoder (None: no clean encoder measured)


def outcomes(m: dict, seed: int | None = None) -> dict[tuple, Outcome]:
    """Every target input of a run's (or a run over seeds') metrics; ``seed`` labels a single run's
    targets (a run over seeds tags each target with its own)."""
    out = {}
    for ti, task in enumerate(m["tasks"]):
        for t in task["targets"]:
            key = (t.get("seed", seed), ti, t["test_index"], t["target_class"])
            if key in out:
                raise ValueError(f"target input {key} appears twice")
            clean = t.get("clean_prediction")
            out[key] = Outcome(t["poisoned_prediction"] == t["target_class"], t.get("poisoned_margin"),
                               None if clean is None else clean == t["target_class"])
    return out


def pool(parts: list[dict[tuple, Outcome]]) -> dict[tuple, Outcome]:
    """The target inputs of several runs as one sample (a target input in two runs is an error)."""
    out: dict[tuple, Outcome] = {}
    for p in parts:
        twice = set(out) & set(p)
        if twice:
            raise ValueError(f"target input {sorted(twice, key=str)[0]} appears in two runs")
        out.update(p)
    return out


def asr(o: dict[tuple, Outcome], clean: bool = False) -> dict:
    """ASR (or the clean encoder's, ``clean``) over the target inputs: count and 95% Wilson interval."""
    hits = [x.clean_flipped if clean else x.flipped for x in o.values()]
    if clean and any(h is None for h in hits):
        return rate(0, 0)
    return rate(sum(bool(h) for h in hits), len(hits))


def paired(ref: dict[tuple, Outcome], val: dict[tuple, Outcome]) -> dict:
    """``val`` minus ``ref`` on the same target inputs: ``n``, ``dASR`` with its 95% interval and
    McNemar's exact p, ``dmargin`` likewise with a paired t interval. ``n`` is None (nothing
    compared) unless both hold exactly the same target inputs."""
    out = {"paired_n": None, "dASR": None, "dASR_lo": None, "dASR_hi": None,
           "dASR_p": None, "dmargin": None, "dmargin_lo": None, "dmargin_hi": None, "dmargin_p": None}
    if set(ref) != set(val) or not ref:
        return out
    keys = sorted(ref, key=str)
    d = paired_rate_difference([ref[k].flipped for k in keys], [val[k].flipped for k in keys])
    out.update(paired_n=d["n"], dASR=d["diff"], dASR_lo=d["ci95"][0], dASR_hi=d["ci95"][1], dASR_p=d["p"])
    if all(ref[k].margin is not None and val[k].margin is not None for k in keys):
        t = paired_mean_difference([ref[k].margin for k in keys], [val[k].margin for k in keys])
        if t["mean"] is not None:
            out.update(dmargin=t["mean"], dmargin_lo=(t["ci95"] or [None, None])[0],
                       dmargin_hi=(t["ci95"] or [None, None])[1], dmargin_p=t["p"])
    return out


def flips_over_clean(o: dict[tuple, Outcome]) -> dict:
    """ASR minus the clean encoder's ASR on the same target inputs (what the attack adds to chance)."""
    clean = {k: Outcome(bool(x.clean_flipped), None, None) for k, x in o.items()}
    return paired(clean, o)
