"""What every defense reports: what it did, its cost (time, inputs removed, clean data used) and,
where it filters data, a verdict per input that can be scored against the ground truth of which
inputs are poisoning inputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import Field

from ..core.settings import NoSettings, Settings


class DefenseSettings(Settings):
    """The ``defense`` section's shared key: which defense (its own settings: ``defense.<name>``)."""

    name: str = Field("none", description="{defenses}")


@dataclass
class DefenseReport:
    name: str
    stage: str                         # pre | in | post (pre-processing, in-processing, post-processing)
    seconds: float = 0.0
    removed: int = 0                   # pre-training inputs removed
    clean_data_used: int = 0           # clean inputs the defender had to supply
    details: dict[str, Any] = field(default_factory=dict)
    verdicts: np.ndarray | None = None  # per input: True = judged a poisoning input

    def score(self, is_poison: np.ndarray) -> dict[str, float]:
        """Precision and recall of the verdicts against the ground truth."""
        return score_verdicts(self.verdicts, is_poison)

    def to_dict(self, is_poison: np.ndarray | None = None) -> dict:
        d = {"name": self.name, "stage": self.stage, "seconds": round(self.seconds, 2), "removed": self.removed,
             "clean_data_used": self.clean_data_used, **self.details}
        if self.verdicts is not None and is_poison is not None:
            d.update(self.score(is_poison))
        return d


@dataclass
class DefenderData:
    """What a post-processing defense may use besides the encoder: the pre-training settings, the
    seed, the device, where to write, and the clean inputs the defender owns (train-split inputs of
    the pre-training dataset that pre-training did not use: ``images[spare]``)."""

    pretrain: dict
    seed: int
    device: str
    out: Path
    images: np.ndarray
    spare: np.ndarray
    log: Callable[[str], None] = print


class Defense:
    """Base of the defenses. A defense declares its settings as a ``Settings`` class (config
    section ``defense.<name>``; the instance holds them parsed and checked in ``settings``), and acts at one stage, through a
    hook of that stage (a subclass with a ``name`` that lacks all of them is an error when it is
    defined):

    * ``pre``: :meth:`filter` judges every pre-training input before pre-training; a filter with
      ``needs_encoder`` gets an encoder too (``filter(images, encoder=...)``): the defender's clean
      encoder, or with ``encoder_source = "unfiltered"`` one pre-trained on the unfiltered
      pre-training set (the pipeline builds it only then, as it builds an attack's surrogate);
    * ``in``: how the (poisoned) encoder is pre-trained: :meth:`adjust_pretrain` changes its
      ``pretrain`` settings, :meth:`view_policy` and :meth:`pair_filter` supply the loop's hooks
      (:mod:`..ssl.hooks`); any of the three;
    * ``post``: :meth:`after_pretrain` turns the pre-trained encoder into the defended one.
    """

    name = ""
    stage = ""
    Settings: type[Settings] = NoSettings
    needs_encoder = False  # pre: filter() takes an encoder (keyword ``encoder``)
    encoder_source = "clean"  # which: the defender's clean encoder, or ``unfiltered`` (pre-trained on the unfiltered data)
    _HOOKS = {"pre": ("filter",), "in": ("adjust_pretrain", "view_policy", "pair_filter"), "post": ("after_pretrain",)}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.name or cls.stage == "none":
            return
        hooks = cls._HOOKS.get(cls.stage)
        if hooks is None:
            raise TypeError(f"defense {cls.name!r}: stage must be one of {', '.join(cls._HOOKS)}, got {cls.stage!r}")
        if all(getattr(cls, h) is getattr(Defense, h) for h in hooks):
            raise TypeError(f"defense {cls.name!r} ({cls.__qualname__}) acts at stage {cls.stage!r} and must implement "
                            + " or ".join(f"{h}()" for h in hooks))

    def check_sizes(self, num_train: int, num_pretrain: int) -> None:
        """Raise :class:`UserError` if the settings do not fit the data: ``num_train`` inputs in the
        pre-training dataset's train split, ``num_pretrain`` of them pre-trained on. Called before
        any training; a defense that needs data of a size overrides it."""

    def __init__(self, **settings):
        self.settings = self.Settings.parse(settings, f"defense.{self.name}")

    def filter(self, images) -> DefenseReport | None:  # noqa: ARG002 (the default: a defense that filters nothing)
        """``pre``: a verdict per pre-training input (True: remove it). With ``needs_encoder`` it is
        called as ``filter(images, encoder=backbone)``: a module from float images in [0, 1] to features."""
        return None

    def adjust_pretrain(self, p: dict) -> dict:
        """``in``: the pre-training settings the poisoned encoder trains with."""
        return p

    def view_policy(self):
        """``in``: the second view's crop boxes from the first's (:mod:`..ssl.hooks`), or None."""
        return None

    def pair_filter(self):
        """``in``: which positive pairs enter the loss (:mod:`..ssl.hooks`), or None."""
        return None

    def training_hooks(self) -> dict:
        """The hooks this defense supplies, as keyword arguments of :func:`..ssl.pretrain.pretrain`
        (``view_policy``, ``pair_filter``; those it does not supply are left out)."""
        hooks = {"view_policy": self.view_policy(), "pair_filter": self.pair_filter()}
        return {k: h for k, h in hooks.items() if h is not None}

    def after_pretrain(self, encoder_dir: Path, data: DefenderData) -> tuple[Path, DefenseReport]:  # noqa: ARG002 (the default: none)
        """``post``: the defended encoder (a path to its ``encoder.pt``) made from the one in
        ``encoder_dir``, and the report of the cost."""
        return encoder_dir / "encoder.pt", DefenseReport(self.name, self.stage)



def score_verdicts(verdicts: np.ndarray, is_poison: np.ndarray) -> dict[str, float]:
    """``precision`` = flagged poisons / flagged, ``recall`` = flagged poisons / poisons.

    >>> score_verdicts(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    {'flagged': 2, 'precision': 0.5, 'recall': 0.5}
    """
    v, p = np.asarray(verdicts, bool), np.asarray(is_poison, bool)
    tp = int((v & p).sum())
    return {"flagged": int(v.sum()), "precision": tp / int(v.sum()) if v.any() else 1.0,
            "recall": tp / int(p.sum()) if p.any() else 1.0}
