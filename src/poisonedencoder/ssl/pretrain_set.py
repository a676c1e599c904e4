"""The pre-training set: unlabeled inputs held in memory as uint8 tensors, one per image shape,
their per-channel statistics, and the two augmented views of a batch."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .augment import AugmentParams, apply_views, per_sample_transform, per_sample_views, sample_view_params
from .hooks import ViewPolicy


class PretrainSet:
    """Unlabeled pre-training inputs held as uint8 tensors, one tensor per image shape.

    Clean images are ``(H, W)``; poisoning inputs may be ``(H, 2W)`` or ``(2H, W)``.
    A batch is drawn over all images; each shape group is cropped from its own tensor,
    so nothing is padded or squeezed and a poisoning input keeps its geometry.

    ``mean`` and ``std`` are the per-channel statistics (in [0, 1] units) of the images of
    ``stats_from`` (default: all of them); the encoder normalizes its input with them.
    """

    def __init__(self, arrays: Sequence[np.ndarray], stats_from: Sequence[np.ndarray] | None = None):
        groups: dict[tuple[int, int], list[np.ndarray]] = {}
        for a in arrays:
            if len(a) == 0:
                continue
            for img in (a if a.ndim == 4 else a[None]):
                groups.setdefault(img.shape[:2], []).append(img)
        self.shapes = list(groups)
        self.groups = [torch.from_numpy(np.stack(groups[s])).permute(0, 3, 1, 2).contiguous() for s in self.shapes]
        sizes = [len(g) for g in self.groups]
        self.offsets = np.cumsum([0] + sizes)
        self.size = int(self.offsets[-1])
        self.mean, self.std = channel_stats(arrays if stats_from is None else stats_from)

    @classmethod
    def from_images(cls, clean: np.ndarray, poisons: Sequence[np.ndarray] = ()) -> "PretrainSet":
        """The clean images and the poisoning inputs; the input statistics are the clean images'
        (so a clean and a poisoned encoder of the same clean set normalize alike)."""
        return cls([clean] + [p[None] for p in poisons], stats_from=[clean] if len(clean) else None)

    def __len__(self) -> int:
        return self.size

    def to(self, device: str | torch.device) -> "PretrainSet":
        """Move the uint8 images to ``device`` (a GPU keeps the whole set and augments there)."""
        self.groups = [g.to(device) for g in self.groups]
        return self

    def views(self, index: torch.Tensor, params: AugmentParams, generator: torch.Generator,
              rank: int = 0, world_size: int = 1, per_sample: bool = False,
              view_policy: ViewPolicy | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented views (float, in [0, 1]) of the images at ``index`` (same order in both).

        The views are grouped by image shape. With ``world_size`` k, ``index`` is the global batch:
        every rank draws the augmentation parameters of all of it (cheap, and identical on every
        rank), then crops and colors only its own contiguous 1/k share, on the images' device.

        ``per_sample``: torchvision's per-sample PIL pipeline instead (:func:`per_sample_views`,
        random parameters from torch's global generator, not ``generator``; one process only).
        ``view_policy`` (an in-training defense's, :mod:`.hooks`): the second view's crop boxes
        from the first's, drawn after both views' parameters (batched only).
        """
        if per_sample:
            return self._per_sample_views(index, params)
        share = len(index) // world_size
        lo, hi = rank * share, (rank + 1) * share
        v1, v2, pos = [], [], 0
        for gi, g in enumerate(self.groups):
            a, b = self.offsets[gi], self.offsets[gi + 1]
            sel = index[(index >= a) & (index < b)] - int(a)
            k = len(sel)
            if k == 0:
                continue
            p1 = sample_view_params(k, g.shape[-2], g.shape[-1], params, generator)
            p2 = sample_view_params(k, g.shape[-2], g.shape[-1], params, generator)
            if view_policy is not None:  # in-training defense: the second view's crop from the first's
                p2.boxes = view_policy(p1.boxes, g.shape[-2], g.shape[-1], params, generator)
            first, last = max(lo, pos), min(hi, pos + k)
            if first < last:
                mine = torch.arange(first - pos, last - pos)
                rows = sel[mine]
                if g.device.type == "cuda":  # pinned, so the copy does not make the host wait for the GPU
                    rows = rows.pin_memory().to(g.device, non_blocking=True)
                imgs = g[rows]
                a1, a2 = apply_views(imgs, [p1.select(mine), p2.select(mine)], params.size)
                v1.append(a1)
                v2.append(a2)
            pos += k
        return torch.cat(v1), torch.cat(v2)

    def _per_sample_views(self, index: torch.Tensor, params: AugmentParams) -> tuple[torch.Tensor, torch.Tensor]:
        tf = per_sample_transform(params)
        v1, v2 = [], []
        for gi, g in enumerate(self.groups):
            a, b = self.offsets[gi], self.offsets[gi + 1]
            sel = index[(index >= a) & (index < b)] - int(a)
            if len(sel):
                imgs = g[sel.to(g.device)]
                v1.append(per_sample_views(imgs, params, tf))
                v2.append(per_sample_views(imgs, params, tf))
        return torch.cat(v1), torch.cat(v2)


def channel_stats(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation, in [0, 1] units, over all pixels of uint8 images
    ``(N, H, W, 3)`` or ``(H, W, 3)`` of any sizes (CIFAR-10's when there are none)."""
    from .augment import MEAN, STD

    n, s1, s2 = 0, np.zeros(3), np.zeros(3)
    for a in arrays:
        if len(a) == 0:
            continue
        a = np.asarray(a).reshape(-1, 3)
        for i in range(0, len(a), 1 << 22):  # in chunks: float64 copies of a whole set are large
            x = a[i:i + (1 << 22)].astype(np.float64)
            n, s1, s2 = n + len(x), s1 + x.sum(0), s2 + np.square(x).sum(0)
    if n == 0:
        return MEAN.clone(), STD.clone()
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))
    return (torch.tensor(mean / 255, dtype=torch.float32),
            torch.tensor(np.maximum(std, 1e-3 * 255) / 255, dtype=torch.float32))
