"""Defenses against poisoning of contrastive pre-training, by name (``defense.name``): three
pre-processing filters, three in-processing changes to pre-training, one post-processing step."""
from .aspect_ratio import AspectRatio
from .base import DefenderData, Defense, DefenseReport, score_verdicts
from .crop_disagreement import CropDisagreement
from .finetune import FineTune
from .in_training import DropDisagreeing, LargeCrops, OverlappingViews
from .part_hash import PartHashFilter


class NoDefense(Defense):
    name, stage = "none", "none"


DEFENSES: dict[str, type[Defense]] = {d.name: d for d in (NoDefense, PartHashFilter, LargeCrops, OverlappingViews,
                                                           DropDisagreeing, FineTune, AspectRatio, CropDisagreement)}
"""Defenses by name. Adding one: a module with a :class:`Defense` subclass (its stage's hook) and a line here."""


def build_defense(d: dict) -> Defense:
    from ..core.errors import UserError

    if d["name"] not in DEFENSES:
        raise UserError(f"defense.name: unknown defense {d['name']!r}; choose one of {', '.join(DEFENSES)}")
    return DEFENSES[d["name"]](**d.get(d["name"], {}))


__all__ = ["DEFENSES", "CropDisagreement", "Defense", "DefenderData", "DefenseReport", "DropDisagreeing", "FineTune", "LargeCrops", "NoDefense",
           "OverlappingViews", "PartHashFilter", "build_defense", "score_verdicts"]
