"""Aspect-ratio filter (a toy pre-processing defense, to show what adding one takes): removes
every pre-training input whose width / height differs from the most common one by more than
``tolerance``. PoisonedEncoder's side-by-side poisoning inputs (32x64 beside 32x32 clean inputs)
are all caught where the clean inputs share one shape; a real crawl's mixed shapes defeat it."""
from __future__ import annotations

import time
from collections import Counter
from typing import Annotated

import numpy as np
from pydantic import Field

from ..core.settings import Number, Range, Settings
from .base import Defense, DefenseReport


class AspectRatioSettings(Settings):
    tolerance: Annotated[Number, Range(0, 10.0, lo_open=True)] = Field(0.1, description="largest |log(width/height) - log(usual ratio)| kept")


class AspectRatio(Defense):
    name, stage = "aspect_ratio", "pre"
    Settings = AspectRatioSettings

    def filter(self, images) -> DefenseReport:
        t0 = time.time()
        scores, usual = self._scores(images)
        verdicts = scores > self.settings.tolerance
        return DefenseReport(self.name, self.stage, time.time() - t0, int(verdicts.sum()), 0,
                             {"usual_log_ratio": usual}, verdicts)

    def scores(self, images) -> np.ndarray:
        """Per input, ``|log(width / height) - log(usual ratio)|`` (the usual ratio: the most
        common one); the verdict of :meth:`filter` is ``scores > tolerance``."""
        return self._scores(images)[0]

    @staticmethod
    def _scores(images) -> tuple[np.ndarray, float]:
        ratios = np.array([np.log(img.shape[1] / img.shape[0]) for img in images])
        if ratios.size == 0:
            return ratios, 0.0
        usual = Counter(np.round(ratios, 6)).most_common(1)[0][0]
        return np.abs(ratios - usual), float(usual)
