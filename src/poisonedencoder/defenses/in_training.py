"""Three in-processing defenses. Each changes how the encoder is pre-trained so that the
mechanism of PoisonedEncoder fails: the attack needs the two views of a poisoning input to show
the target input in one and the reference input in the other, and training to pull those
disagreeing views together.

Each acts through one hook of the pre-training loop: ``large_crops`` through the settings
(:meth:`~.base.Defense.adjust_pretrain`), ``overlapping_views`` through a view policy and
``drop_disagreeing`` through a pair filter (:mod:`..ssl.hooks`).

* ``large_crops``: a larger minimum crop scale (``min_scale``, default 0.4). A crop covering 40%
  or more of a 32x64 poisoning input rarely lies inside one half. Measured on a 32x64 input: 7.2%
  of positive pairs are (target only, reference only) at scale 0.08, 3.7% at 0.2 and 0.2% at 0.4.
  The cost: weaker augmentation, so less useful features.
* ``overlapping_views``: the second view's crop must share ``min_overlap`` (default 0.5) of the
  smaller crop with the first. Views from different halves never share anything. Scale stays
  free, so small crops, and their value for learning, are kept.
* ``drop_disagreeing``: in every batch, leave out of the loss the ``fraction`` (default 0.1) of
  positive pairs whose projections agree least. A split poisoning pair is such a pair. SimCLR only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from ..core.settings import Number, Range, Settings
from .base import Defense

if TYPE_CHECKING:  # torch is imported when a hook runs, not with the registry
    import torch

    from ..ssl.augment import AugmentParams


class LargeCropsSettings(Settings):
    min_scale: Annotated[Number, Range(0, 1.0, lo_open=True)] = Field(0.4, description="minimum crop scale of pre-training")


class LargeCrops(Defense):
    name, stage = "large_crops", "in"
    Settings = LargeCropsSettings

    def adjust_pretrain(self, p: dict) -> dict:
        return {**p, "crop_scale": [max(self.settings.min_scale, p["crop_scale"][0]), p["crop_scale"][1]]}


class OverlappingViewsSettings(Settings):
    min_overlap: Annotated[Number, Range(0, 1.0, lo_open=True)] = Field(0.5, description="the views' crops share at least this fraction of the smaller one")


class OverlappingViews(Defense):
    name, stage = "overlapping_views", "in"
    Settings = OverlappingViewsSettings

    def view_policy(self) -> "OverlapPolicy":
        return OverlapPolicy(self.settings.min_overlap)


class DropDisagreeingSettings(Settings):
    fraction: Annotated[Number, Range(0, 0.9, lo_open=True)] = Field(0.1, description="positive pairs left out of the loss per batch (the least agreeing; simclr)")


class DropDisagreeing(Defense):
    name, stage = "drop_disagreeing", "in"
    Settings = DropDisagreeingSettings

    def pair_filter(self) -> "DropLeastAgreeing":  # methods with drops_pairs only: config.validate checks it
        return DropLeastAgreeing(self.settings.fraction)


class OverlapPolicy:
    """View policy: the second view's crop shares at least ``min_overlap`` of the smaller crop
    with the first (:func:`~..ssl.augment.overlapping_boxes`)."""

    source = "overlapping_views"

    def __init__(self, min_overlap: float):
        self.min_overlap = min_overlap
        self.record = {"view_overlap": min_overlap}

    def __call__(self, first: torch.Tensor, height: int, width: int, aug: AugmentParams,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        from ..ssl.augment import overlapping_boxes

        return overlapping_boxes(first, height, width, aug, generator, min_overlap=self.min_overlap)


class DropLeastAgreeing:
    """Pair filter: keep the positive pairs but the ``fraction`` whose projections agree least
    (:func:`~..ssl.losses.agreeing_pairs`; the threshold from the global batch under torchrun)."""

    source = "drop_disagreeing"

    def __init__(self, fraction: float):
        self.fraction = fraction
        self.record = {"drop_disagreeing": fraction}

    def __call__(self, z1: torch.Tensor, z2: torch.Tensor, z1_all: torch.Tensor | None = None,
                 z2_all: torch.Tensor | None = None) -> torch.Tensor:
        import torch.nn.functional as F

        from ..ssl.losses import agreeing_pairs

        all_cos = None if z1_all is None else F.cosine_similarity(z1_all, z2_all, dim=1)
        return agreeing_pairs(z1, z2, self.fraction, all_cos)
