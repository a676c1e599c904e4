"""A continuous score per image for each filter, and the verdicts a scan draws from it.

Scores (higher: more suspect):

- ``crop_disagreement``: ``1 - mean`` pairwise cosine of the features of 8 random crops of the
  image (:meth:`~poisonedencoder.defenses.CropDisagreement.scores`, its default settings), crops
  resized to ``size`` pixels; needs an encoder;
- ``part_hash``: the number of distinct images in the largest group that one of the image's parts
  (whole, halves) shares with near the same pHash (:meth:`~poisonedencoder.defenses.PartHashFilter.scores`);
- ``aspect_ratio``: ``|log(width / height) - log(the most common ratio)|``.

Verdicts: part_hash and aspect_ratio keep their own thresholds (``score >= min_group`` = 5,
``score > tolerance`` = 0.1). crop_disagreement's threshold is set for a false-positive rate
``fpr`` without labels (:mod:`poisonedencoder.defenses.threshold`): ``robust`` (median + z * MAD of
the folder's own scores) or ``reference`` (the split-conformal quantile of a trusted clean
folder's scores); or, as the oracle, ``budget``: the top share, which needs the number of
poisoning inputs to be told.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..defenses import AspectRatio, CropDisagreement, PartHashFilter
from ..defenses.threshold import reference_threshold, robust_threshold, top_share

FILTERS = ("crop_disagreement", "part_hash", "aspect_ratio")
CHUNK = 512
"""crop_disagreement scores this many images per call (one progress step); the crops' random
stream restarts with each call, so the scores depend on it: it is fixed."""
ORACLE = "oracle: the share of poisoning inputs told"


def filter_scores(name: str, images: Sequence[np.ndarray], encoder=None, size: int | None = None,
                  log: Callable[[str], None] | None = None) -> np.ndarray:
    """The scores of filter ``name`` for ``images`` (uint8 ``(H, W, 3)``, any sizes). ``encoder``
    (crop_disagreement): a module from float images ``(N, 3, size, size)`` in [0, 1] to features;
    ``size``: the crops' side (default: the smaller side of the most common shape)."""
    if name == "crop_disagreement":
        if encoder is None:
            raise ValueError("crop_disagreement needs an encoder")
        from collections import Counter

        from .folder import progress

        if size is None and len(images):
            size = min(Counter(im.shape[:2] for im in images).most_common(1)[0][0])
        f = CropDisagreement()
        chunks = [list(images[i:i + CHUNK]) for i in range(0, len(images), CHUNK)]
        parts = [f.scores(c, encoder, size=size) for c in progress(chunks, "crop_disagreement", log or (lambda _: None))]
        return np.concatenate(parts) if parts else np.zeros(0)
    if name == "part_hash":
        return PartHashFilter().scores(list(images), progress=True).astype(float)
    if name == "aspect_ratio":
        return AspectRatio().scores(list(images))
    raise ValueError(f"unknown filter {name!r}; one of {', '.join(FILTERS)}")


def own_verdicts(name: str, scores: np.ndarray) -> tuple[np.ndarray, dict]:
    """part_hash's and aspect_ratio's verdicts at their own thresholds, and the rule."""
    if name == "part_hash":
        g = PartHashFilter().min_group
        return scores >= g, {"method": "own", "value": g, "rule": f"score >= min_group ({g}): a part shared by "
                             f"{g} or more images", "oracle": False}
    if name == "aspect_ratio":
        t = AspectRatio().settings.tolerance
        return scores > t, {"method": "own", "value": t, "rule": f"score > tolerance ({t:g}): a width/height ratio "
                            "off the most common one", "oracle": False}
    raise ValueError(f"{name} has no threshold of its own")


def threshold_verdicts(scores: np.ndarray, fpr: float, reference_scores: Sequence[float] | None = None,
                       budget: float | None = None) -> tuple[np.ndarray, dict]:
    """crop_disagreement's verdicts and how its threshold was set: ``budget`` (the oracle's top
    share), else from ``reference_scores`` (:func:`reference_threshold`), else from ``scores``
    themselves (:func:`robust_threshold`); flagged: ``score > threshold``."""
    scores = np.asarray(scores, float)
    if budget is not None:
        v = top_share(scores, budget)
        return v, {"method": "budget", "value": float(scores[v].min()) if v.any() else None, "share": budget,
                   "oracle": True, "rule": f"the top {budget:g} of the scores ({ORACLE})"}
    if reference_scores is not None:
        t = reference_threshold(reference_scores, fpr)
        n = len(reference_scores)
        return scores > t, {"method": "reference", "value": t, "fpr": fpr, "n_reference": n, "oracle": False,
                            "rule": f"score > the split-conformal (1 - {fpr:g}) quantile of {n} trusted clean reference "
                                    f"images' scores: a clean image is flagged with probability at most {fpr:g}"}
    t = robust_threshold(scores, fpr)
    return scores > t, {"method": "robust", "value": t, "fpr": fpr, "oracle": False,
                        "rule": f"score > median + z(1 - {fpr:g}) x 1.4826 x MAD of the folder's own scores: {fpr:g} of "
                                "clean scores above it where they are near normal; fewer as poisoning inputs grow in number"}
