"""Post-processing defense: fine-tune the pre-trained (possibly poisoned) encoder on a clean data
set that the defender owns, with the same method and augmentation, for ``epochs`` epochs on
``num_clean`` inputs, drawn from the pre-training data set's train split, disjoint from the inputs
that pre-training used. ASR and PA are then measured on the fine-tuned encoder; sweep
``defense.finetune.num_clean`` to see the price in clean data.

``control``: the clean encoder is fine-tuned the same way, on the same clean inputs, and CA and
the clean encoder's ASR are measured on it. Without the control, a PA above CA may be the extra
data's gain, not the defense's: the control credits the data to both encoders alike.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from ..core.errors import UserError
from ..core.io import write_json
from ..core.settings import Range, Settings
from .base import DefenderData, Defense, DefenseReport


class FineTuneSettings(Settings):
    num_clean: Annotated[int, Range(0, 10**9, lo_open=True)] = Field(5000, description="clean train inputs that pre-training did not use")
    epochs: Annotated[int, Range(0, 100000, lo_open=True)] = Field(20, description="fine-tuning epochs")
    control: bool = Field(False, description="also fine-tune the clean encoder on the same clean inputs; CA and clean ASR "
                          "are measured on it")


class FineTune(Defense):
    name, stage = "finetune", "post"
    Settings = FineTuneSettings
    fine_tunes_clean = property(lambda self: self.settings.control)

    def check_sizes(self, num_train: int, num_pretrain: int) -> None:
        spare = num_train - num_pretrain
        if self.settings.num_clean > spare:
            raise UserError(f"defense.finetune.num_clean {self.settings.num_clean} exceeds the {spare} train inputs "
                            f"that pre-training did not use ({num_train} in the train split, {num_pretrain} pre-trained "
                            "on; lower pretrain_data.num_images or num_clean)")

    def after_pretrain(self, encoder_dir: Path, data: DefenderData) -> tuple[Path, DefenseReport]:
        """Fine-tune the encoder of ``encoder_dir`` (from its last checkpoint) into
        ``data.out / "encoders" / "finetuned"``; reuses a finished one."""
        from ..ssl.pretrain import pretrain
        from ..ssl.pretrain_set import PretrainSet

        s, d = self.settings, data.out / "encoders" / "finetuned"
        report = DefenseReport(self.name, self.stage, 0.0, clean_data_used=s.num_clean, details={"epochs": s.epochs, "control": s.control})
        if (d / "encoder.pt").exists():
            return d / "encoder.pt", report
        t0 = time.time()
        if s.num_clean > len(data.spare):
            raise UserError(f"defense.finetune.num_clean {s.num_clean} exceeds the {len(data.spare)} train inputs "
                            "that pre-training did not use")
        idx = np.sort(np.random.default_rng([data.seed, 5]).choice(data.spare, s.num_clean, replace=False))
        p = dict(data.pretrain, epochs=s.epochs, batch_size=min(data.pretrain["batch_size"], s.num_clean))
        data.log(f"defense finetune: {s.num_clean} clean inputs, {s.epochs} epochs -> {d}")
        pretrain(PretrainSet.from_images(data.images[idx]), p, d, data.seed, data.device, desc="finetune", log=data.log,
                 init=encoder_dir / "checkpoint.pt")
        report.seconds = time.time() - t0
        write_json(data.out / "defense.json", report.to_dict())
        return d / "encoder.pt", report
