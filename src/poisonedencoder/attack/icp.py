"""ICP, image-only: the targeted poisoning of Carlini & Terzis (ICLR 2022), adapted from
image-text to image-only contrastive pre-training.

The original pairs the target image with a caption naming the target class, so the image and
the text of one training pair carry "target" and "target class". Here one poisoning input
carries both in a single image, in a way that does not rely on the crop geometry that
PoisonedEncoder exploits:

* ``blend`` (default): ``alpha * target + (1 - alpha) * reference``. Every crop of the poisoning
  input shows both at once, like the image-text pair.
* ``overlay``: the target input shrunk to ``scale`` of each side and pasted at a random place on
  the reference input (picture in picture).

Each poisoning input uses one reference input of the target class, in turn, as PoisonedEncoder does.
"""
from __future__ import annotations

from typing import Annotated

import numpy as np
from PIL import Image
from pydantic import Field

from ..core.settings import Number, Range, Settings
from .base import Attack, PoisoningInput


def blend(target: np.ndarray, reference: np.ndarray, alpha: float) -> np.ndarray:
    return np.clip(np.rint(alpha * target.astype(np.float64) + (1 - alpha) * reference), 0, 255).astype(np.uint8)


def overlay(target: np.ndarray, reference: np.ndarray, scale: float, y: float, x: float) -> np.ndarray:
    """``target`` resized to ``scale`` of ``reference``'s size, pasted with its top-left corner at
    fraction ``(y, x)`` of the free room."""
    h, w = reference.shape[:2]
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(target).resize((tw, th), Image.BILINEAR))
    out = reference.copy()
    top, left = int(y * (h - th)), int(x * (w - tw))
    out[top:top + th, left:left + tw] = small
    return out


class ICPSettings(Settings):
    mode: str = Field("blend", description="blend | overlay")
    alpha: Annotated[Number, Range(0.0, 1.0)] = Field(0.5, description="blend: alpha * target + (1 - alpha) * reference")
    scale: Annotated[Number, Range(0.05, 1.0)] = Field(0.5, description="overlay: target's size relative to the reference")

    def check(self, where: str) -> None:
        from ..core.errors import UserError

        if self.mode not in ("blend", "overlay"):
            raise UserError(f"{where}.mode must be blend or overlay, got {self.mode!r}")


class ICP(Attack):
    name = "icp"
    Settings = ICPSettings

    def make(self, targets, tasks, per_target, rng, surrogate):  # noqa: ARG002 (Attack.make signature; no surrogate needed)
        out = []
        for tid, t in enumerate(targets):
            ds = tasks[t.task]
            timg = ds.test.images[t.test_index]
            for j in range(per_target):
                r = t.reference_indices[j % len(t.reference_indices)]
                ref = ds.train.images[r]
                if self.settings.mode == "blend":
                    img = blend(timg, ref, self.settings.alpha)
                else:
                    img = overlay(timg, ref, self.settings.scale, *rng.random(2))
                out.append(PoisoningInput(img, tid, r, self.settings.mode, True))
        return out
