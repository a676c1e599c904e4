"""What every attack shares: the target inputs, their reference inputs and the poisoning budget.

An attack declares its own settings in ``defaults`` (config section ``attack.<name>``), checks
them in ``check``, and builds the poisoning inputs in ``make``. The pipeline gives every attack
the same target inputs, target classes and reference inputs, and the same budget (poisoning
inputs per target input, from ``attack.poisoning_rate``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from ..errors import UserError, check_number
from .targets import Target, select_references


@dataclass
class PoisoningInput:
    image: np.ndarray
    target_id: int          # index into the attack's target list
    reference_index: int    # index into the task's train split (-1: none)
    layout: str             # how it was made: left-right, top-bottom, blend, overlay, copy, perturbed
    target_first: bool

    def meta(self) -> dict:
        d = asdict(self)
        d.pop("image")
        d["shape"] = list(self.image.shape)
        return d


class Attack:
    """Base of the attacks.

    poisoning_rate: poisoning inputs / clean pre-training inputs, all target inputs together.
    num_references: reference inputs per target input.
    reference_selection: ``random`` reference inputs of the target class, or the most ``typical``
        (the caller passes a typicality score per train input to :meth:`craft`).
    """

    name = ""
    defaults: dict[str, Any] = {}
    needs_surrogate = False   # craft() then needs a clean pre-trained model (see Witches' Brew)

    def __init__(self, poisoning_rate: float = 0.03, num_references: int = 10, reference_selection: str = "random",
                 seed: int = 0, **settings):
        if not 0 < poisoning_rate <= 1:
            raise UserError(f"poisoning_rate must be in (0, 1], got {poisoning_rate}")
        if not isinstance(num_references, int) or num_references < 1:
            raise UserError(f"num_references must be an integer >= 1, got {num_references}")
        if reference_selection not in ("random", "typical"):
            raise UserError(f"reference_selection must be random or typical, got {reference_selection!r}")
        unknown = set(settings) - set(self.defaults)
        if unknown:
            raise UserError(f"attack {self.name}: unknown setting(s) {', '.join(sorted(unknown))}")
        self.poisoning_rate, self.num_references = poisoning_rate, num_references
        self.reference_selection, self.seed = reference_selection, seed
        self.settings = {**self.defaults, **settings}
        self.check(self.settings)

    def check(self, s: dict) -> None:
        """Raise :class:`UserError` for a bad setting."""

    def poisons_per_target(self, num_clean: int, num_targets: int) -> int:
        return max(1, int(round(self.poisoning_rate * num_clean / num_targets)))

    def choose_references(self, targets: list[Target], tasks: list, rng: np.random.Generator,
                          typicality: list | None = None) -> None:
        for t in targets:
            if not t.reference_indices:
                t.reference_indices = select_references(tasks[t.task], t.target_class, self.num_references, rng,
                                                       typicality[t.task] if typicality else None)

    def craft(self, targets: list[Target], tasks: list, num_clean: int, typicality: list | None = None,
              surrogate: Callable | None = None) -> list[PoisoningInput]:
        """Reference inputs for every target input (stored on it), then the poisoning inputs.
        ``surrogate()`` returns the attacker's clean model where ``needs_surrogate``."""
        rng = np.random.default_rng([self.seed, 2])
        self.choose_references(targets, tasks, rng, typicality)
        return self.make(targets, tasks, self.poisons_per_target(num_clean, len(targets)), rng, surrogate)

    def make(self, targets: list[Target], tasks: list, per_target: int, rng: np.random.Generator,
             surrogate: Callable | None) -> list[PoisoningInput]:
        raise NotImplementedError


def number(s: dict, key: str, lo: float, hi: float, name: str, integer: bool = False) -> None:
    check_number(s[key], f"attack.{name}.{key}", lo, hi, integer)
