"""Pre-processing defense in feature space: remove the inputs whose own random crops disagree.

A PoisonedEncoder poisoning input shows two objects, the target input and a reference input of
another class; crops of it, as pre-training draws them, often show one object or the other, and
a clean encoder maps those crops far apart. A clean input shows one object, and its crops agree.
The score of an input: draw ``crops`` random crops (RandomResizedCrop's rule, area fraction in
``crop_scale``, aspect ratio in [3/4, 4/3], :func:`~poisonedencoder.ssl.augment.sample_crop_boxes`),
each resized to the clean inputs' size (the smaller side of the most common input shape; bilinear,
antialiased by ``roi_align``'s adaptive sampling), embed them with the defender's encoder, and take
``1 - mean`` (``statistic: mean``) or ``1 - min`` (``min``) of the pairwise cosine similarities of
the crops' features. The crops are drawn with a fixed seed, so the verdicts are reproducible.

Which inputs are removed: by default the ``budget`` fraction with the highest scores (a fixed share:
set to the true share of poisoning inputs it is an oracle's choice, the defender told how many there
are). With ``fpr`` set, the inputs scoring above :func:`~.threshold.robust_threshold` (``median +
z(1 - fpr) * 1.4826 * MAD`` of the scores, estimated without labels) for that stated false-positive
rate: as many as the scores put above it, however many that is. ``fpr``, when set, replaces
``budget`` (which is then unused). The report (``defense.json``) says which rule set the threshold
(``threshold_rule``: ``fpr`` or ``budget (oracle)``), the threshold and the number removed.

The encoder (``encoder``): ``clean``, the defender's clean encoder, standing for one that the
defender pre-trains on clean data of its own (in the pipeline the configuration's clean encoder,
the one the attacker's surrogate also stands in for; it is built only for a defense with
``needs_encoder``); or ``unfiltered``, an encoder the run pre-trains first on the unfiltered
pre-training set, poisoning inputs included, as a defender without clean data has it. The shape
of an input plays no part, so the ``square`` poisoning inputs that pass the aspect-ratio filter
are scored like any other; ``target_variation`` does not hide the two objects either.

From PatchSearch (Tejankar et al., CVPR 2023; an encoder's features locate and score candidate
poisons, then the top-scoring are removed before the final pre-training) it takes the use of an
encoder's features to score every training input, an encoder trained on the poisoned data as one
choice (``encoder: unfiltered``), and the removal of a fixed top fraction. It does not take its k-means clusters, Grad-CAM
localisation of a trigger patch or the poison classifier trained on the first finds: PoisonedEncoder
has no trigger patch to paste elsewhere; the disagreement of the input's own crops is the direct
test of what its poisoning inputs need. From DeDe (Hou et al., CVPR 2024; a decoder trained to
invert the encoder on an auxiliary, possibly poisoned, set flags inputs whose reconstruction from
their embedding is poor) it takes the idea that an input whose embedding misrepresents its content
is the suspect; it does not train a decoder, and it judges training inputs before pre-training, not
test inputs of a finished encoder.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Annotated, Sequence

import numpy as np
from pydantic import Field

from ..core.errors import UserError, preview
from ..core.settings import ADDED_LATER, Number, Range, Settings
from ..ssl.settings import check_crop_scale
from .base import Defense, DefenseReport
from .threshold import robust_threshold

STATISTICS = ("mean", "min")
ENCODERS = ("clean", "unfiltered")
SEED = 1234  # the crops' random stream: fixed, so that the verdicts are reproducible


class CropDisagreementSettings(Settings):
    budget: Annotated[Number, Range(0, 1, lo_open=True)] = Field(
        0.05, description="fraction of the pre-training inputs removed (the most disagreeing); unused when fpr is set")
    fpr: Annotated[Number | None, ADDED_LATER] = Field(
        None, description="null (remove the budget fraction) | a false-positive rate in (0, 1): remove the inputs\n"
                          "scoring above median + z(1 - fpr) * 1.4826 * MAD of the scores (no labels, no oracle);\n"
                          "fpr, when set, replaces budget")
    crops: Annotated[int, Range(2, 1024)] = Field(8, description="random crops per input whose features are compared")
    crop_scale: list[Number] = Field([0.08, 1.0], description="[min, max] area fraction of a crop (pre-training's crop rule)")
    statistic: str = Field("mean", description="mean (score 1 - mean pairwise cosine of the crops' features) | min (1 - the least)")
    encoder: str = Field("clean", description="clean (the defender's clean encoder) | unfiltered (pre-trained on the\n"
                         "unfiltered pre-training set, poisoning inputs included, as PatchSearch's; one more pre-training)")

    def check(self, where: str) -> None:
        if self.budget >= 1:
            raise UserError(f"{where}.budget must be below 1 (a fraction removed), got {self.budget}")
        if self.fpr is not None and not 0 < self.fpr < 1:
            raise UserError(f"{where}.fpr must lie strictly between 0 and 1 (a false-positive rate) or be null, got {self.fpr}")
        check_crop_scale(self.crop_scale, f"{where}.crop_scale")
        if self.statistic not in STATISTICS:
            raise UserError(f"{where}.statistic must be mean or min, got {preview(self.statistic)}")
        if self.encoder not in ENCODERS:
            raise UserError(f"{where}.encoder must be clean or unfiltered, got {preview(self.encoder)}")


class CropDisagreement(Defense):
    name, stage = "crop_disagreement", "pre"
    needs_encoder = True
    Settings = CropDisagreementSettings

    @property
    def encoder_source(self) -> str:
        """Which encoder the pipeline hands to :meth:`filter`: ``clean`` or ``unfiltered``."""
        return self.settings.encoder

    def filter(self, images: Sequence[np.ndarray], encoder=None) -> DefenseReport:
        """Verdicts for ``images`` (uint8 ``(H, W, 3)`` of any sizes) from :meth:`scores`: the top
        ``budget`` fraction, or with ``fpr`` set those above :func:`~.threshold.robust_threshold`.
        ``encoder``: a module from float images ``(N, 3, S, S)`` in [0, 1] to features."""
        if encoder is None:
            raise UserError("defense crop_disagreement needs an encoder (the defender's clean encoder)")
        t0 = time.time()
        s = self.settings
        scores = self.scores(images, encoder)
        verdicts, rule = self.verdicts(scores)
        return DefenseReport(self.name, self.stage, time.time() - t0, int(verdicts.sum()), 0,
                             {"crops": s.crops, "statistic": s.statistic, "encoder": s.encoder, **rule}, verdicts)

    def verdicts(self, scores: np.ndarray) -> tuple[np.ndarray, dict]:
        """Which inputs are removed for ``scores``, and the rule that chose them (the report's
        ``threshold_rule``, ``fpr`` or ``budget``, and ``threshold``: with ``fpr`` the robust
        threshold, an input above it removed; with ``budget`` the lowest score removed, or None)."""
        s = self.settings
        if s.fpr is not None:
            if not len(scores):
                return np.zeros(0, bool), {"threshold_rule": "fpr", "fpr": s.fpr, "threshold": None}
            threshold = robust_threshold(scores, s.fpr)
            return scores > threshold, {"threshold_rule": "fpr", "fpr": s.fpr, "threshold": threshold}
        k = int(round(s.budget * len(scores)))
        verdicts = np.zeros(len(scores), bool)
        verdicts[np.argsort(-scores, kind="stable")[:k]] = True
        return verdicts, {"threshold_rule": "budget (oracle)", "budget": s.budget,
                          "threshold": float(scores[verdicts].min()) if k else None}

    def scores(self, images: Sequence[np.ndarray], encoder, batch: int = 256, size: int | None = None) -> np.ndarray:
        """Per input, how much the features of its own random crops disagree (module docstring).
        ``size``: the side the crops are resized to (default: the smaller side of the most common
        input shape)."""
        import torch
        import torch.nn.functional as F
        from torchvision.ops import roi_align

        from ..ssl.augment import sample_crop_boxes

        s, k = self.settings, self.settings.crops
        if size is None:
            size = min(Counter(im.shape[:2] for im in images).most_common(1)[0][0]) if len(images) else 1
        device = next(iter(encoder.parameters()), torch.zeros(0)).device
        g = torch.Generator().manual_seed(SEED)
        out = np.zeros(len(images))
        by_shape: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            by_shape.setdefault(im.shape[:2], []).append(i)
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                for (h, w), idx in by_shape.items():
                    for lo in range(0, len(idx), batch):
                        part = idx[lo:lo + batch]
                        x = torch.as_tensor(np.stack([images[i] for i in part])).permute(0, 3, 1, 2).float().div_(255)
                        boxes = sample_crop_boxes(len(part) * k, h, w, tuple(s.crop_scale), generator=g)
                        owner = torch.arange(len(part)).repeat_interleave(k).float().unsqueeze(1)
                        views = roi_align(x, torch.cat([owner, boxes], 1), output_size=size, sampling_ratio=0, aligned=True)
                        f = F.normalize(encoder(views.to(device)).float().flatten(1), dim=1).view(len(part), k, -1)
                        cos = f @ f.transpose(1, 2)  # (n, k, k)
                        iu = torch.triu_indices(k, k, 1)
                        pairs = cos[:, iu[0], iu[1]]
                        agree = pairs.mean(1) if s.statistic == "mean" else pairs.min(1).values
                        out[part] = (1 - agree).cpu().numpy()
        finally:
            encoder.train(was_training)
        return out
