"""PoisonedEncoder's contrastive-learning-tailored poisoning inputs.

A poisoning input puts a target input and a reference input of the target class side
by side (left-right or top-bottom). Random crops of it then often show only the target
in one view and only the reference in the other, and contrastive learning pulls their
features together: the encoder learns to map the target near its target class.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from .base import Attack, PoisoningInput
from .targets import Target, select_references

LAYOUTS = ("left-right", "top-bottom")


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


class PoisonedEncoder(Attack):
    """The attack. Parameters are declared and checked on construction.

    poisoning_rate: poisoning inputs / clean pre-training inputs, for all targets together.
    num_references: reference inputs per target.
    layout: ``random`` (each poisoning input draws left-right or top-bottom), ``left-right``, ``top-bottom``.
    order: ``random``, ``target-first`` or ``reference-first``.
    gap: gray pixels between the two parts.
    reference_selection: ``random`` reference inputs of the target class, or the most ``typical``
        ones (the caller passes a typicality score per train input to :meth:`craft`).
    """

    name = "poisonedencoder"

    def __init__(self, poisoning_rate: float = 0.03, num_references: int = 10, layout: str = "random",
                 order: str = "random", gap: int = 0, reference_selection: str = "random", seed: int = 0):
        super().__init__(poisoning_rate, num_references, reference_selection, seed)
        if layout not in ("random",) + LAYOUTS:
            raise UserError(f"layout must be random, left-right or top-bottom, got {layout!r}")
        if order not in ("random", "target-first", "reference-first"):
            raise UserError(f"order must be random, target-first or reference-first, got {order!r}")
        if gap < 0:
            raise UserError(f"gap must be >= 0, got {gap}")
        self.layout, self.order, self.gap = layout, order, gap

    def craft(self, targets: list[Target], tasks: list, num_clean: int,
              typicality: list | None = None, surrogate=None) -> list[PoisoningInput]:  # noqa: ARG002 (Attack.craft signature)
        """Choose reference inputs for each target (stored on the target) and build the poisoning inputs.

        ``tasks[t.task]`` is the :class:`ImageDataset` of target ``t``'s downstream task.
        ``typicality[t.task]`` (optional) scores that task's train inputs; the most typical
        inputs of the target class are then the reference inputs (see ``select_references``).
        """
        # (its own order of random draws, kept so that recorded runs reproduce)
        rng = np.random.default_rng([self.seed, 2])
        m = self.poisons_per_target(num_clean, len(targets))
        out = []
        for tid, t in enumerate(targets):
            ds = tasks[t.task]
            if not t.reference_indices:
                t.reference_indices = select_references(ds, t.target_class, self.num_references, rng,
                                                       typicality[t.task] if typicality else None)
            timg = ds.test.images[t.test_index]
            for j in range(m):
                r = t.reference_indices[j % len(t.reference_indices)]
                layout = self.layout if self.layout != "random" else LAYOUTS[int(rng.integers(2))]
                first = {"target-first": True, "reference-first": False}.get(self.order, bool(rng.integers(2)))
                img = compose(timg, ds.train.images[r], layout, first, self.gap)
                out.append(PoisoningInput(img, tid, r, layout, first))
        return out
