"""PoisonedEncoder's contrastive-learning-tailored poisoning inputs.

A poisoning input puts a target input and a reference input of the target class side
by side (left-right or top-bottom). Random crops of it then often show only the target
in one view and only the reference in the other, and contrastive learning pulls their
features together: the encoder learns to map the target near its target class.
"""
from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from ..errors import UserError
from ..settings import Range, Settings
from .base import Attack, PoisoningInput

LAYOUTS = ("left-right", "top-bottom")
ORDERS = ("random", "target-first", "reference-first")


def compose(target: np.ndarray, reference: np.ndarray, layout: str = "left-right", target_first: bool = True,
            gap: int = 0, fill: int = 128) -> np.ndarray:
    """Place ``target`` and ``reference`` (uint8 ``(H, W, 3)``, same size) side by side.

    ``left-right`` gives ``(H, 2W + gap, 3)``; ``top-bottom`` gives ``(2H + gap, W, 3)``.
    """
    if target.shape != reference.shape:
        raise ValueError(f"target {target.shape} and reference {reference.shape} differ in shape")
    a, b = (target, reference) if target_first else (reference, target)
    axis = 1 if layout == "left-right" else 0
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    parts = [a]
    if gap:
        shape = list(a.shape)
        shape[axis] = gap
        parts.append(np.full(shape, fill, dtype=np.uint8))
    parts.append(b)
    return np.concatenate(parts, axis=axis)


class PoisonedEncoderSettings(Settings):
    """layout: ``random`` (each poisoning input draws left-right or top-bottom), ``left-right``, ``top-bottom``.
    order: ``random``, ``target-first`` or ``reference-first``.
    gap: gray pixels between the two parts."""

    doc = "used when name: poisonedencoder"
    layout: str = Field("random", description="random | left-right | top-bottom")
    order: str = Field("random", description="random | target-first | reference-first")
    gap: Annotated[int, Range(0, 4096)] = Field(0, description="gray pixels between target and reference")

    def check(self, where: str) -> None:
        if self.layout not in ("random",) + LAYOUTS:
            raise UserError(f"{where}.layout must be random, left-right or top-bottom, got {self.layout!r}")
        if self.order not in ORDERS:
            raise UserError(f"{where}.order must be random, target-first or reference-first, got {self.order!r}")


class PoisonedEncoder(Attack):
    """The attack; its settings: :class:`PoisonedEncoderSettings` (``attack.poisonedencoder``)."""

    name = "poisonedencoder"
    Settings = PoisonedEncoderSettings

    def make(self, targets, tasks, per_target, rng, surrogate):  # noqa: ARG002 (Attack.make signature; no surrogate needed)
        s, out = self.settings, []
        for tid, t in enumerate(targets):
            ds = tasks[t.task]
            timg = ds.test.images[t.test_index]
            for j in range(per_target):
                r = t.reference_indices[j % len(t.reference_indices)]
                layout = s.layout if s.layout != "random" else LAYOUTS[int(rng.integers(2))]
                first = {"target-first": True, "reference-first": False}.get(s.order, bool(rng.integers(2)))
                out.append(PoisoningInput(compose(timg, ds.train.images[r], layout, first, s.gap), tid, r, layout, first))
        return out

    def target_box(self, p: PoisoningInput) -> tuple[int, int, int, int] | None:
        from .export import target_box

        return target_box(p, self.settings.gap)
