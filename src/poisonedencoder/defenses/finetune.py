"""Post-processing defense: fine-tune the pre-trained (possibly poisoned) encoder on a clean data
set that the defender owns, with the same method and augmentation, for ``epochs`` epochs on
``num_clean`` inputs. The pipeline draws them from the pre-training data set's train split,
disjoint from the inputs that pre-training used. ASR and PA are then measured on the fine-tuned
encoder; sweep ``defense.finetune.num_clean`` to see the price in clean data.
"""
from __future__ import annotations

from .base import Defense, _positive


class FineTune(Defense):
    name, stage = "finetune", "post"
    defaults = {"num_clean": 5000, "epochs": 20}

    def check(self, s: dict) -> None:
        _positive(s, "num_clean", self.name, 10**9, integer=True)
        _positive(s, "epochs", self.name, 100000, integer=True)
