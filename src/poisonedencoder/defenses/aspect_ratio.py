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

from ..settings import Number, Range, Settings
from .base import Defense, DefenseReport


class AspectRatioSettings(Settings):
    tolerance: Annotated[Number, Range(0, 10.0, lo_open=True)] = Field(0.1, description="largest |log(width/height) - log(usual ratio)| kept")


class AspectRatio(Defense):
    name, stage = "aspect_ratio", "pre"
    Settings = AspectRatioSettings

    def filter(self, images) -> DefenseReport:
        t0 = time.time()
        ratios = np.array([np.log(img.shape[1] / img.shape[0]) for img in images])
        usual = Counter(np.round(ratios, 6)).most_common(1)[0][0]
        verdicts = np.abs(ratios - usual) > self.settings.tolerance
        return DefenseReport(self.name, self.stage, time.time() - t0, int(verdicts.sum()), 0,
                             {"usual_log_ratio": float(usual)}, verdicts)
