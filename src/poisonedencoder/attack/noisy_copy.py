"""Noisy copies (a toy attack, to show what adding one takes): every poisoning input is its
target input plus Gaussian pixel noise of standard deviation ``sigma`` (in 0-255 units)."""
from __future__ import annotations

import numpy as np

from .base import Attack, PoisoningInput, number


class NoisyCopy(Attack):
    name = "noisy_copy"
    defaults = {"sigma": 8.0}
    doc = {"sigma": "standard deviation of the pixel noise (0-255)"}

    def check(self, s: dict) -> None:
        number(s, "sigma", 0, 255, self.name)

    def make(self, targets, tasks, per_target, rng, surrogate):  # noqa: ARG002 (Attack.make signature)
        out = []
        for tid, t in enumerate(targets):
            img = tasks[t.task].test.images[t.test_index].astype(np.float32)
            for _ in range(per_target):
                noisy = np.clip(img + rng.normal(0, self.settings["sigma"], img.shape), 0, 255).round().astype(np.uint8)
                out.append(PoisoningInput(noisy, tid, -1, "noisy-copy", True))
        return out
