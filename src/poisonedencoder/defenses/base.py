"""What every defense reports: what it did, its cost (time, inputs removed, clean data used) and,
where it filters data, a verdict per input that can be scored against the ground truth of which
inputs are poisoning inputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class DefenseReport:
    name: str
    stage: str                         # pre | in | post (pre-processing, in-processing, post-processing)
    seconds: float = 0.0
    removed: int = 0                   # pre-training inputs removed
    clean_data_used: int = 0           # clean inputs the defender had to supply
    details: dict[str, Any] = field(default_factory=dict)
    verdicts: np.ndarray | None = None  # per input: True = judged a poisoning input

    def score(self, is_poison: np.ndarray) -> dict[str, float]:
        """Precision and recall of the verdicts against the ground truth."""
        return score_verdicts(self.verdicts, is_poison)

    def to_dict(self, is_poison: np.ndarray | None = None) -> dict:
        d = {"name": self.name, "stage": self.stage, "seconds": round(self.seconds, 2), "removed": self.removed,
             "clean_data_used": self.clean_data_used, **self.details}
        if self.verdicts is not None and is_poison is not None:
            d.update(self.score(is_poison))
        return d


def score_verdicts(verdicts: np.ndarray, is_poison: np.ndarray) -> dict[str, float]:
    """``precision`` = flagged poisons / flagged, ``recall`` = flagged poisons / poisons.

    >>> score_verdicts(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    {'flagged': 2, 'precision': 0.5, 'recall': 0.5}
    """
    v, p = np.asarray(verdicts, bool), np.asarray(is_poison, bool)
    tp = int((v & p).sum())
    return {"flagged": int(v.sum()), "precision": tp / int(v.sum()) if v.any() else 1.0,
            "recall": tp / int(p.sum()) if p.any() else 1.0}
