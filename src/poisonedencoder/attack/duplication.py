"""Target duplication: the naive baseline. Every poisoning input is a copy of its target input.
Contrastive learning then sees the target more often, but with nothing of the target class."""
from __future__ import annotations

from .base import Attack, PoisoningInput


class Duplication(Attack):
    name = "duplication"

    def make(self, targets, tasks, per_target, rng, surrogate):  # noqa: ARG002 (Attack.make signature; copies need no randomness)
        return [PoisoningInput(tasks[t.task].test.images[t.test_index].copy(), tid, -1, "copy", True)
                for tid, t in enumerate(targets) for _ in range(per_target)]
