"""Where a filter's score becomes a verdict without an oracle: a threshold set for a false-positive
rate the defender states, estimated without labels.

Two estimates, each for a stated ``fpr`` (the share of clean inputs the defender accepts to lose):

- :func:`robust_threshold`, from the scores alone: ``median + z(1 - fpr) * 1.4826 * MAD``. The
  median and the median absolute deviation barely move when a minority of the scores are poisoning
  inputs far above the rest (their breakdown point is 50%), and for clean scores that are close to
  normal the threshold cuts ``fpr`` of them. Its false-positive rate is exact only as far as the
  clean scores' upper tail is normal. Poisoning inputs above the clean bulk raise the median and
  the MAD, so the more there are, the higher the threshold: fewer false positives than stated, and
  a lower recall (a fifth of the inputs far above normal clean scores: 0.4% flagged at ``fpr``
  0.05). The detection tables measure the rate it gives on data.
- :func:`reference_threshold`, from the scores of a small folder the defender trusts to be clean
  (scored with the same filter and encoder): the ``ceil((n + 1)(1 - fpr))``-th smallest of the
  ``n`` reference scores (a split-conformal quantile). For a clean input exchangeable with the
  reference inputs the chance of a score above it is at most ``fpr``, whatever the distribution;
  it needs ``n >= 1 / fpr - 1`` reference inputs.

Both return a number: an input whose score is above it is flagged. The fixed share of
:func:`top_share` (the filters' ``budget``) is the oracle's choice: the defender is told how many
poisoning inputs there are; tables that use it say so.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

from ..core.errors import UserError

MAD_TO_SD = 1.4826
"""MAD x this = the standard deviation of a normal distribution (1 / Phi^-1(3/4))."""


def _check_fpr(fpr: float) -> None:
    if not 0 < fpr < 1:
        raise UserError(f"the false-positive rate must lie strictly between 0 and 1, got {fpr}")


def robust_threshold(scores: Sequence[float], fpr: float) -> float:
    """``median + z(1 - fpr) * 1.4826 * MAD`` of ``scores`` (module docstring)."""
    _check_fpr(fpr)
    s = np.asarray(scores, float)
    if s.size == 0:
        raise UserError("no scores to set a threshold from")
    med = float(np.median(s))
    mad = float(np.median(np.abs(s - med)))
    return med + NormalDist().inv_cdf(1 - fpr) * MAD_TO_SD * mad


def reference_threshold(reference_scores: Sequence[float], fpr: float) -> float:
    """The split-conformal ``(1 - fpr)`` quantile of clean reference scores (module docstring)."""
    _check_fpr(fpr)
    s = np.sort(np.asarray(reference_scores, float))
    n = s.size
    k = math.ceil((n + 1) * (1 - fpr))
    if k > n:
        raise UserError(f"a reference of {n} clean inputs cannot set a false-positive rate of {fpr:g}: "
                        f"it needs at least {math.ceil(1 / fpr - 1)}")
    return float(s[k - 1])


def top_share(scores: Sequence[float], share: float) -> np.ndarray:
    """The oracle's verdicts: the ``share`` of inputs with the highest scores (ties by order)."""
    s = np.asarray(scores, float)
    k = int(round(share * s.size))
    verdicts = np.zeros(s.size, bool)
    verdicts[np.argsort(-s, kind="stable")[:k]] = True
    return verdicts
