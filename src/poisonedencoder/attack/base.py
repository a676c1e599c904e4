"""What every attack shares: the poisoning budget and the contract of ``make``.

An attack declares its own settings in ``defaults`` (config section ``attack.<name>``, described
in ``doc``), checks them in ``check``, and builds the poisoning inputs in ``make``. The pipeline
gives every attack the same target inputs, target classes and reference inputs (chosen before,
by :func:`~poisonedencoder.attack.targets.choose_references`), and the same budget (poisoning
inputs per target input, from ``attack.poisoning_rate``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import UserError, check_number, preview
from .targets import Target, choose_references


@dataclass
class PoisoningInput:
    image: np.ndarray
    target_id: int          # index into the attack's target list
    reference_index: int    # index into the task's train split (-1: none)
    kind: str               # how it was made: left-right, top-bottom, blend, overlay, copy, perturbed
    target_first: bool

    def meta(self) -> dict:
        d = asdict(self)
        d.pop("image")
        d["shape"] = list(self.image.shape)
        return d


def poisons_per_target(poisoning_rate: float, num_clean: int, num_targets: int) -> int:
    """The budget: ``round(rate * clean inputs / target inputs)`` poisoning inputs per target input (at least 1)."""
    return max(1, int(round(poisoning_rate * num_clean / num_targets)))


def craft_rng(seed: int) -> np.random.Generator:
    """The random stream of ``make`` (apart from the reference inputs' stream)."""
    return np.random.default_rng([seed, 4])


class Attack:
    """Base of the attacks. A subclass with a ``name`` but no ``make`` of its own is an error when
    it is defined.

    poisoning_rate: poisoning inputs / clean pre-training inputs, all target inputs together.
    num_references: reference inputs per target input.
    reference_selection: ``random`` reference inputs of the target class, or the most ``typical``.
    needs_surrogate: ``make`` needs the attacker's clean pre-trained model (``surrogate``); the
        pipeline builds it only then.
    added_later: settings added after runs were recorded, each with the value that does what the
        attack did before it existed (its default); at that value a setting stays out of the
        run's fingerprint (:func:`~poisonedencoder.config.experiment_fingerprint`), so recorded
        runs keep theirs.
    """

    name = ""
    defaults: dict[str, Any] = {}
    doc: dict[str, str] = {}
    added_later: dict[str, Any] = {}
    needs_surrogate = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name and cls.make is Attack.make:
            raise TypeError(f"attack {cls.name!r} ({cls.__qualname__}) must implement make()")

    def __init__(self, poisoning_rate: float = 0.03, num_references: int = 10, reference_selection: str = "random",
                 seed: int = 0, **settings):
        check_number(poisoning_rate, "attack.poisoning_rate", 0, 1, lo_open=True)
        check_number(num_references, "attack.num_references", 1, 10**6, integer=True)
        if reference_selection not in ("random", "typical"):
            raise UserError(f"attack.reference_selection must be random or typical, got {preview(reference_selection)}")
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
        return poisons_per_target(self.poisoning_rate, num_clean, num_targets)

    def craft(self, targets: list[Target], tasks: list, num_clean: int, typicality: list | None = None,
              surrogate=None) -> list[PoisoningInput]:
        """Outside the pipeline, in one call: reference inputs for every target input that has none
        (:func:`choose_references`, stored on it), then :meth:`make` within the budget."""
        choose_references(targets, tasks, self.num_references, self.seed, typicality)
        return self.make(targets, tasks, self.poisons_per_target(num_clean, len(targets)), craft_rng(self.seed), surrogate)

    def make(self, targets: list[Target], tasks: list, per_target: int, rng: np.random.Generator,
             surrogate) -> list[PoisoningInput]:
        """``per_target`` poisoning inputs for each target input, in target order; ``tasks[t.task]``
        is target ``t``'s :class:`ImageDataset` and ``t.reference_indices`` its reference inputs."""
        raise NotImplementedError

    def target_box(self, p: PoisoningInput) -> tuple[int, int, int, int] | None:
        """Where poisoning input ``p`` shows its target input (for the grid); None where it is not one region."""
        from .export import target_box

        return target_box(p)


def number(s: dict, key: str, lo: float, hi: float, name: str, integer: bool = False) -> None:
    check_number(s[key], f"attack.{name}.{key}", lo, hi, integer)
