"""A row of the claims table (the paper's statement, what was measured, a verdict) and the rules of
its verdict, fixed before the data (docs/CLAIMS.md, "How a verdict is reached").

Rules. An ASR is *high* when its 95% Wilson interval's lower end is at least 0.65; the CA - PA
gap is *small* when its 95% interval (paired t over seeds) lies below 0.02; one setting *beats*
another by 0.2 when the paired difference's 95% interval (Newcombe) lies above 0.2, and *differs*
from it when that interval excludes 0. Inside the noise a row says "no difference measured".
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..compare import paired
from .formats import regime
from .results import ArmResult

REPRODUCED, IN_PART, NOT, NOT_MEASURABLE, PENDING = (
    "reproduced", "reproduced in part", "not reproduced", "not measurable here", "not measured yet")
HIGH, SMALL_GAP, MARGIN = 0.65, 0.02, 0.2


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


def _ready(row: Row, res: dict[str, ArmResult], min_targets: int = 30) -> bool:
    """Every arm of the row has finished runs; otherwise the row says what is missing."""
    missing = [a for a in row.arms if a not in res or not res[a].runs]
    if missing:
        row.why = "to run: " + ", ".join(missing)
        return False
    head = res[row.arms[0]]
    row.regime = regime(head)
    partial = [a for a in row.arms if not res[a].done]
    if partial:
        row.why = "partial: " + ", ".join(f"{a} {len(res[a].runs)}/{res[a].planned_runs or '?'} runs" for a in partial) + "; "
    if head.n < min_targets:
        row.why += f"{head.n} target inputs, fewer than the {min_targets} a verdict needs; "
    return True


def _same_targets(ref: ArmResult, val: ArmResult) -> dict:
    """``paired`` on the target inputs both arms finished."""
    keys = set(ref.outcomes) & set(val.outcomes)
    return paired({k: ref.outcomes[k] for k in keys}, {k: val.outcomes[k] for k in keys})


def _final(row: Row, verdict: str, why: str) -> None:
    row.verdict = PENDING if row.why.startswith("partial") or "fewer than" in row.why else verdict
    row.why = row.why + why
