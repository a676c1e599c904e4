"""Stripes (a toy dataset, to show what adding one takes): gratings at four orientations
(classes 0, 45, 90, 135 degrees) with random frequency, phase and colour; 400 train and 100
test inputs per class, the same for every call."""
from __future__ import annotations

import numpy as np

CLASSES = ["0", "45", "90", "135"]


def load_stripes(size: int):
    from .datasets import ImageSplit

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size

    def split(per_class: int) -> ImageSplit:
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        imgs = np.empty((len(labels), size, size, 3), np.uint8)
        for i, c in enumerate(labels):
            a = np.deg2rad(45 * c)
            wave = np.sin(2 * np.pi * rng.uniform(2, 5) * (xx * np.cos(a) + yy * np.sin(a)) + rng.uniform(0, 2 * np.pi))
            colour = rng.uniform(0.3, 1.0, 3)
            imgs[i] = np.clip(127.5 * (1 + wave[..., None] * colour) + rng.normal(0, 8, (size, size, 3)), 0, 255)
        return ImageSplit(imgs, labels.astype(np.int64))

    return list(CLASSES), split(400), split(100)
