"""Defenses against poisoning of contrastive pre-training (issue 6; the pre-processing filter so far)."""
from .base import DefenseReport, score_verdicts
from .part_hash import PartHashFilter

__all__ = ["DefenseReport", "PartHashFilter", "score_verdicts"]
