"""A row of the claims table (the paper's statement, what was measured, a verdict) and the rules of
its verdict, fixed before the data (docs/CLAIMS.md, "How a verdict is reached").

Rules. An ASR is *high* when its 95% Wilson interval's lower end is at least 0.65; the CA - PA
gap is *small* when its 95% interval (paired t over seeds) lies below 0.02. One rule, :func:`above`,
decides every "A is above B by 0.2" (an attack against a baseline, an attack's ASR against the
clean encoder's): *above* when the paired difference's 95% interval (Newcombe) lies above 0.2,
*above at the point estimate* when only the point does, else *not above*. A difference is
*measured* when that interval excludes 0; the interval decides, McNemar's exact p is shown beside
it, and a row says so where the two disagree (:func:`tests_disagree`). "No difference measured"
is said only where the interval includes 0; "ineffective" needs more: the interval must rule out
an effect of 0.2 or more. A verdict needs :data:`MIN_TARGETS` target inputs over
:data:`MIN_SEEDS` seeds in every arm of its row.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..compare import paired
from .formats import regime, setting
from .results import ArmResult

REPRODUCED, IN_PART, NOT, NOT_MEASURABLE, PENDING = (
    "reproduced", "reproduced in part", "not reproduced", "not measurable here", "not measured yet")
HIGH, SMALL_GAP, MARGIN, ALPHA = 0.65, 0.02, 0.2, 0.05
MIN_TARGETS, MIN_SEEDS = 30, 3
ABOVE, POINT_ABOVE, NOT_ABOVE = "above", "above at the point estimate", "not above"
LADDER = {ABOVE: REPRODUCED, POINT_ABOVE: IN_PART, NOT_ABOVE: NOT}
"""The verdict of a row that asks only "is A above B by 0.2"."""


def above(d: dict, margin: float = MARGIN) -> str:
    """The one rule for "A is above B by ``margin``" on a paired difference ``d`` (A - B, from
    :func:`~poisonedencoder.studies.compare.paired`): :data:`ABOVE` when its 95% interval lies at or above
    ``margin``, :data:`POINT_ABOVE` when only the point estimate does, else :data:`NOT_ABOVE`
    (also when nothing was paired)."""
    if d.get("dASR") is None:
        return NOT_ABOVE
    if d["dASR_lo"] >= margin:
        return ABOVE
    return POINT_ABOVE if d["dASR"] >= margin else NOT_ABOVE


def differs(d: dict) -> bool:
    """A difference is measured: the paired difference's 95% interval excludes 0 (the interval
    decides, not McNemar's p)."""
    return d.get("dASR") is not None and (d["dASR_lo"] > 0 or d["dASR_hi"] < 0)


def tests_disagree(d: dict) -> str:
    """``""``, or a note where McNemar's exact p and the interval disagree on whether a difference
    is measured (the interval excludes 0 while p >= 0.05, or the reverse): the interval decides."""
    p = d.get("dASR_p")
    if d.get("dASR") is None or p is None or differs(d) == (p < ALPHA):
        return ""
    return (f" (McNemar's p = {p:.3g} is {'not ' if differs(d) else ''}below {ALPHA}: the two tests disagree; "
            "the interval decides)")


@dataclass
class Row:
    key: str
    claim: str                       # the paper's statement (or what a row beyond the paper asks)
    arms: tuple[str, ...]            # the arms it needs, the first its headline
    regime: str = ""
    measurement: str = ""
    verdict: str = PENDING
    why: str = ""
    numbers: dict = field(default_factory=dict)
    section: str = ""                # "" (the paper's claims) or the section beyond the paper it belongs to (race)
    setting: dict = field(default_factory=dict)  # the regime's parts (formats.setting), to say only what differs


def _ready(row: Row, res: dict[str, ArmResult], min_targets: int = MIN_TARGETS, min_seeds: int = MIN_SEEDS) -> bool:
    """Every arm of the row has finished runs; otherwise the row says what is missing. A row whose
    arms hold fewer than ``min_targets`` target inputs or ``min_seeds`` seeds gets no verdict."""
    missing = [a for a in row.arms if a not in res or not res[a].runs]
    if missing:
        row.why = "to run: " + ", ".join(missing)
        return False
    head = res[row.arms[0]]
    row.regime, row.setting = regime(head), setting(head)
    partial = [a for a in row.arms if not res[a].done]
    if partial:
        row.why = "partial: " + ", ".join(f"{a} {len(res[a].runs)}/{res[a].planned_runs or '?'} runs" for a in partial) + "; "
    for a in dict.fromkeys(row.arms):
        r = res[a]
        if r.n < min_targets:
            row.why += f"{a}: {r.n} target inputs, fewer than the {min_targets} a verdict needs; "
        if len(r.seeds()) < min_seeds:
            row.why += f"{a}: {len(r.seeds())} seed{'s' if len(r.seeds()) != 1 else ''}, fewer than the {min_seeds} a verdict needs; "
    return True


def _same_targets(ref: ArmResult, val: ArmResult) -> dict:
    """``paired`` on the target inputs both arms finished."""
    keys = set(ref.outcomes) & set(val.outcomes)
    return paired({k: ref.outcomes[k] for k in keys}, {k: val.outcomes[k] for k in keys})


def _final(row: Row, verdict: str, why: str) -> None:
    row.verdict = PENDING if row.why.startswith("partial") or "fewer than" in row.why else verdict
    row.why = row.why + why
