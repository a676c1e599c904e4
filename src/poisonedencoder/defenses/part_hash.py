"""Pre-processing defense: find inputs that share an image part with many other inputs.

PoisonedEncoder's poisoning inputs of one target input all contain that target input, as one
half; target duplication repeats it whole. Clean data rarely repeats a part across many images.
The filter computes a perceptual hash (imagehash's pHash, 64 bits) of each input's whole image
and of its left, right, top and bottom halves. It links parts whose hashes differ in at most
``max_distance`` bits, and removes every input whose part is shared by at least ``min_group``
distinct inputs. Near-flat parts (pixel standard deviation below ``min_std``) carry no content
and are skipped, since their hashes coincide by chance.

Near matches are found without comparing all pairs: each 64-bit hash is cut into
``max_distance + 1`` blocks, and two hashes within the distance share at least one block exactly
(pigeonhole). Cost grows with the number of inputs, not its square.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Sequence

import numpy as np
from PIL import Image
from pydantic import Field

from ..core.errors import UserError
from ..core.settings import Number, Settings
from .base import Defense, DefenseReport

PARTS = ("whole", "left", "right", "top", "bottom")


def parts(img: np.ndarray) -> dict[str, np.ndarray]:
    h, w = img.shape[:2]
    return {"whole": img, "left": img[:, : w // 2], "right": img[:, w - w // 2:],
            "top": img[: h // 2], "bottom": img[h - h // 2:]}


def phash64(img: np.ndarray) -> int:
    import imagehash

    bits = imagehash.phash(Image.fromarray(img)).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


class PartHashSettings(Settings):
    max_distance: int = Field(4, description="pHash bits within which two parts match")
    min_group: int = Field(5, description="remove inputs whose part at least this many inputs share")
    min_std: Number = Field(12.0, description="skip near-flat parts (pixel standard deviation below this)")

    def check(self, where: str) -> None:
        if not 0 <= self.max_distance <= 15:
            raise UserError(f"{where}.max_distance must be an integer in [0, 15], got {self.max_distance!r}")
        if self.min_group < 2:
            raise UserError(f"{where}.min_group must be an integer >= 2, got {self.min_group!r}")


class PartHashFilter(Defense):
    name, stage = "part_hash", "pre"
    Settings = PartHashSettings

    def __init__(self, **settings):
        super().__init__(**settings)
        s = self.settings
        self.max_distance, self.min_group, self.min_std = s.max_distance, s.min_group, float(s.min_std)

    def filter(self, images: Sequence[np.ndarray], progress: bool = False) -> DefenseReport:
        return self(images, progress)

    def __call__(self, images: Sequence[np.ndarray], progress: bool = False) -> DefenseReport:
        """Verdicts for ``images`` (uint8 ``(H, W, 3)`` arrays of any sizes): ``scores >= min_group``."""
        t0 = time.time()
        scores, hashed, groups = self._groups(images, progress)
        verdicts = scores >= self.min_group
        shared = sum(1 for g in groups if g >= self.min_group)
        return DefenseReport(self.name, self.stage, time.time() - t0, int(verdicts.sum()),
                             details={"parts_hashed": hashed, "groups_removed": shared},
                             verdicts=verdicts)

    def scores(self, images: Sequence[np.ndarray], progress: bool = False) -> np.ndarray:
        """Per input, the number of distinct inputs in the largest group that one of its parts
        belongs to (1: no part of it is shared, or it has no part with content); the verdict of
        :meth:`filter` is ``scores >= min_group``."""
        return self._groups(images, progress)[0]

    def _groups(self, images: Sequence[np.ndarray], progress: bool) -> tuple[np.ndarray, int, list[int]]:
        """The scores, the number of parts hashed and the size (distinct inputs) of every group."""
        import sys

        from tqdm.auto import tqdm

        owners, hashes = [], []
        for i, img in enumerate(tqdm(images, desc="part hashes", disable=not (progress and sys.stderr.isatty()))):
            for part in parts(img).values():
                if part.size and part.std() >= self.min_std:
                    owners.append(i)
                    hashes.append(phash64(part))
        uf = _UnionFind(len(hashes))
        k = self.max_distance + 1
        width = 64 // k
        for b in range(k):
            shift = 64 - (b + 1) * width if b < k - 1 else 0
            size = width if b < k - 1 else 64 - (k - 1) * width
            buckets: dict[int, list[int]] = defaultdict(list)
            for j, h in enumerate(hashes):
                buckets[(h >> shift) & ((1 << size) - 1)].append(j)
            for members in buckets.values():
                for a_pos, a in enumerate(members):
                    for c in members[a_pos + 1:]:
                        if owners[a] != owners[c] and bin(hashes[a] ^ hashes[c]).count("1") <= self.max_distance:
                            uf.union(a, c)
        groups: dict[int, set[int]] = defaultdict(set)
        for j in range(len(hashes)):
            groups[uf.find(j)].add(owners[j])
        scores = np.ones(len(images), dtype=np.int64)
        for g in groups.values():
            members = list(g)
            scores[members] = np.maximum(scores[members], len(g))
        return scores, len(hashes), [len(g) for g in groups.values()]
