"""What every attack shares: the poisoning budget and the contract of ``make``.

An attack declares its own settings as a ``Settings`` class (config section ``attack.<name>``:
fields with defaults and descriptions, and their ``check``), and builds the poisoning inputs in ``make``. The pipeline
gives every attack the same target inputs, target classes and reference inputs (chosen before,
by :func:`~poisonedencoder.attack.targets.choose_references`), and the same budget (poisoning
inputs per target input, from ``attack.poisoning_rate``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from ..core.errors import UserError, preview
from ..core.settings import NoSettings, Number, Range, Settings
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


class AttackSettings(Settings):
    """The ``attack`` section's shared keys: which attack, and the budget every attack gets."""

    name: str = Field("poisonedencoder", description="{attacks} (DESIGN.md)")
    poisoning_rate: Annotated[Number, Range(0, 1, lo_open=True)] = Field(0.03, description="poisoning inputs / clean pre-training inputs, all targets together")
    num_references: Annotated[int, Range(1, 10**6)] = Field(10, description="reference inputs per target (from the task's train split)")
    reference_selection: str = Field("random", description="random | typical (closest to the class mean of a clean "
                                     "surrogate encoder; see DESIGN.md)")

    def check(self, where: str) -> None:
        if self.reference_selection not in ("random", "typical"):
            raise UserError(f"{where}.reference_selection must be random or typical, got {preview(self.reference_selection)}")


class Attack:
    """Base of the attacks. A subclass with a ``name`` but no ``make`` of its own is an error when
    it is defined. A subclass declares its own settings (config section ``attack.<name>``) as a
    :class:`~poisonedencoder.core.settings.Settings` class, ``Settings``; the instance holds them
    parsed and checked in ``settings``.

    poisoning_rate: poisoning inputs / clean pre-training inputs, all target inputs together.
    num_references: reference inputs per target input.
    reference_selection: ``random`` reference inputs of the target class, or the most ``typical``.
    needs_surrogate: ``make`` needs the attacker's clean pre-trained model (``surrogate``); the
        pipeline builds it only then.
    """

    name = ""
    Settings: type[Settings] = NoSettings
    needs_surrogate = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name and cls.make is Attack.make:
            raise TypeError(f"attack {cls.name!r} ({cls.__qualname__}) must implement make()")

    def __init__(self, poisoning_rate: float = 0.03, num_references: int = 10, reference_selection: str = "random",
                 seed: int = 0, **settings):
        AttackSettings.parse({"name": self.name, "poisoning_rate": poisoning_rate, "num_references": num_references,
                              "reference_selection": reference_selection}, "attack")
        self.poisoning_rate, self.num_references = poisoning_rate, num_references
        self.reference_selection, self.seed = reference_selection, seed
        self.settings = self.Settings.parse(settings, f"attack.{self.name}")

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
