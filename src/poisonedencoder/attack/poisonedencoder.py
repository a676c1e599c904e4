"""PoisonedEncoder's contrastive-learning-tailored poisoning inputs.

A poisoning input puts a target input and a reference input of the target class side
by side (left-right or top-bottom). Random crops of it then often show only the target
in one view and only the reference in the other, and contrastive learning pulls their
features together: the encoder learns to map the target near its target class.

Two settings make an adaptive attacker, one against each cheap filter of the toolkit; at their
defaults the poisoning inputs are the paper's, byte for byte:

* ``shape: square`` against the aspect-ratio filter: the poisoning input has the clean inputs'
  size (its target input's), and the target and the reference input are each resized into their
  half of it (squeezed to half the width for left-right, half the height for top-bottom; each
  tile a quarter for ``layout: 2x2``). Resizing: ``torch.nn.functional.interpolate``, bilinear
  with ``antialias=True`` (as :func:`~poisonedencoder.ssl.augment.to_input`), rounded to uint8.
* ``target_variation: s`` (in [0, 1]) against the part-hash filter, which finds a target input
  repeated unchanged: each poisoning input carries its own random transform of the target input,
  drawn from the attack's random stream (:func:`vary`):

  - random resized crop: area fraction uniform in ``[1 - 0.5 s, 1]``, aspect ratio
    ``exp(u)`` with ``u`` uniform in ``s * [log 3/4, log 4/3]``, at a uniform place, resized back
    to the target input's size (as above);
  - horizontal flip with probability 0.5 (when ``s > 0``);
  - colour jitter: brightness, contrast and saturation factors uniform in ``[1 - 0.4 s, 1 + 0.4 s]``
    (pre-training's 0.4 at ``s = 1``), applied in that order
    (:func:`~poisonedencoder.ssl.augment.color_jitter`); no hue shift;
  - uniform noise in ``[-8/255 s, 8/255 s]`` per pixel and channel (L-inf ``8/255 s``).

  ``s = 0`` draws nothing: the target input is used unchanged and the random stream is the paper's.

``layout: 2x2`` tiles four parts (also an option of the paper's shape: 2H x 2W): the target input
on one diagonal, its reference input on the other (``target_first``: the target top-left).
"""
from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import Field

from ..core.errors import UserError
from ..core.settings import ADDED_LATER, Number, Range, Settings
from .base import Attack, PoisoningInput

LAYOUTS = ("left-right", "top-bottom")  # what layout: random draws from (the paper's)
TILINGS = LAYOUTS + ("2x2",)
ORDERS = ("random", "target-first", "reference-first")
SHAPES = ("paper", "square")


def compose(target: np.ndarray, reference: np.ndarray, layout: str = "left-right", target_first: bool = True,
            gap: int = 0, fill: int = 128) -> np.ndarray:
    """Place ``target`` and ``reference`` (uint8 ``(H, W, 3)``, same size) side by side.

    ``left-right`` gives ``(H, 2W + gap, 3)``; ``top-bottom`` gives ``(2H + gap, W, 3)``; ``2x2``
    gives ``(2H + gap, 2W + gap, 3)``, the first of the two on the main diagonal.
    """
    if target.shape != reference.shape:
        raise ValueError(f"target {target.shape} and reference {reference.shape} differ in shape")
    if layout not in TILINGS:
        raise ValueError(f"unknown layout {layout!r}")
    h, w = target.shape[:2]
    size = {"left-right": (h, 2 * w + gap), "top-bottom": (2 * h + gap, w), "2x2": (2 * h + gap, 2 * w + gap)}[layout]
    return _place(target, reference, layout, target_first, gap, fill, size)


def compose_square(target: np.ndarray, reference: np.ndarray, layout: str = "left-right", target_first: bool = True,
                   gap: int = 0, fill: int = 128) -> np.ndarray:
    """The ``square`` shape: a canvas of ``target``'s size (the clean inputs'), ``target`` and
    ``reference`` each resized into its half (left-right: ``H x (W - gap) // 2``; top-bottom:
    ``(H - gap) // 2 x W``) or, for ``2x2``, into its two diagonal quarters. Pixels that no part
    covers (the gap, and one row or column where ``W - gap`` is odd) are ``fill``."""
    if layout not in TILINGS:
        raise ValueError(f"unknown layout {layout!r}")
    return _place(target, reference, layout, target_first, gap, fill, target.shape[:2])


def _place(a: np.ndarray, b: np.ndarray, layout: str, a_first: bool, gap: int, fill: int,
           size: tuple[int, int]) -> np.ndarray:
    """``a`` and ``b`` (``a_first``: ``a`` left, top, or top-left and bottom-right) on a ``size``
    canvas of ``fill``, each part resized to its region where it does not fit it already."""
    h, w = size
    ph = (h - gap) // 2 if layout != "left-right" else h
    pw = (w - gap) // 2 if layout != "top-bottom" else w
    if ph < 1 or pw < 1:
        raise UserError(f"attack.poisonedencoder.gap {gap} leaves no room for the parts of a {h}x{w} poisoning input")
    first, second = (a, b) if a_first else (b, a)
    first, second = resize(first, ph, pw), resize(second, ph, pw)
    out = np.full((h, w, 3), fill, dtype=np.uint8)
    out[:ph, :pw] = first
    if layout == "2x2":  # first on the main diagonal, second on the other
        out[h - ph:, w - pw:] = first
        out[:ph, w - pw:] = second
        out[h - ph:, :pw] = second
    else:
        out[h - ph:, w - pw:] = second
    return out


def resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` resized to ``(height, width, 3)``: bilinear, antialiased
    (``torch.nn.functional.interpolate(..., antialias=True)``), rounded; unchanged at its size."""
    if img.shape[:2] == (height, width):
        return img
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def vary(img: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A random transform of uint8 ``img`` of ``strength`` in [0, 1] (module docstring); the
    image itself, and nothing drawn from ``rng``, at 0."""
    if strength == 0:
        return img
    import torch

    from ..ssl.augment import color_jitter

    h, w = img.shape[:2]
    area = rng.uniform(1 - 0.5 * strength, 1.0)
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)) * strength)
    ch = int(min(h, max(1, round(h * math.sqrt(area / ratio)))))
    cw = int(min(w, max(1, round(w * math.sqrt(area * ratio)))))
    y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    out = resize(img[y0:y0 + ch, x0:x0 + cw], h, w)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    b, c, s = (torch.tensor([rng.uniform(1 - 0.4 * strength, 1 + 0.4 * strength)], dtype=torch.float32) for _ in range(3))
    x = torch.as_tensor(np.ascontiguousarray(out)).permute(2, 0, 1)[None].float().div(255)
    x = color_jitter(x, b, c, s, torch.zeros(1), [0, 1, 2])[0].permute(1, 2, 0).numpy()
    noise = rng.uniform(-8 / 255 * strength, 8 / 255 * strength, size=x.shape)
    return (np.clip(x + noise, 0, 1) * 255).round().astype(np.uint8)


class PoisonedEncoderSettings(Settings):
    """layout: ``random`` (each poisoning input draws left-right or top-bottom), ``left-right``,
        ``top-bottom``, ``2x2`` (target input and reference input on the two diagonals).
    order: ``random``, ``target-first`` or ``reference-first``.
    gap: gray pixels between the two parts.
    shape: ``paper`` (the parts at their own size: 1:2 or 2:1) or ``square`` (the clean inputs' size).
    target_variation: strength in [0, 1] of a random transform of the target input per poisoning
        input (0: the target input unchanged, as the paper)."""

    doc = "used when name: poisonedencoder"
    layout: str = Field("random", description="random (left-right or top-bottom) | left-right | top-bottom | 2x2")
    order: str = Field("random", description="random | target-first | reference-first")
    gap: Annotated[int, Range(0, 4096)] = Field(0, description="gray pixels between target and reference")
    shape: Annotated[str, ADDED_LATER] = Field(
        "paper", description="paper (target and reference at full size: 1:2 or 2:1) | square (each resized into its half of\n"
                             "a canvas of the clean inputs' size; against defense aspect_ratio)")
    target_variation: Annotated[Number, Range(0, 1), ADDED_LATER] = Field(
        0.0, description="0..1: each poisoning input a random transform of the target input: crop of area\n"
                         ">= 1 - s/2, flip, brightness/contrast/saturation +-0.4 s, noise +-8/255 s\n"
                         "(0: the target unchanged, as the paper; against defense part_hash)")

    def check(self, where: str) -> None:
        if self.layout not in ("random",) + TILINGS:
            raise UserError(f"{where}.layout must be random, left-right, top-bottom or 2x2, got {self.layout!r}")
        if self.order not in ORDERS:
            raise UserError(f"{where}.order must be random, target-first or reference-first, got {self.order!r}")
        if self.shape not in SHAPES:
            raise UserError(f"{where}.shape must be paper or square, got {self.shape!r}")


class PoisonedEncoder(Attack):
    """The attack; its settings: :class:`PoisonedEncoderSettings` (``attack.poisonedencoder``)."""

    name = "poisonedencoder"
    Settings = PoisonedEncoderSettings

    def make(self, targets, tasks, per_target, rng, surrogate):  # noqa: ARG002 (Attack.make signature; no surrogate needed)
        s, out = self.settings, []
        place = compose_square if s.shape == "square" else compose
        for tid, t in enumerate(targets):
            ds = tasks[t.task]
            timg = ds.test.images[t.test_index]
            for j in range(per_target):
                r = t.reference_indices[j % len(t.reference_indices)]
                layout = s.layout if s.layout != "random" else LAYOUTS[int(rng.integers(2))]
                first = {"target-first": True, "reference-first": False}.get(s.order, bool(rng.integers(2)))
                part = vary(timg, s.target_variation, rng)
                out.append(PoisoningInput(place(part, ds.train.images[r], layout, first, s.gap), tid, r, layout, first))
        return out

    def target_box(self, p: PoisoningInput) -> tuple[int, int, int, int] | None:
        from .export import target_box

        return target_box(p, self.settings.gap)
