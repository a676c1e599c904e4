"""``poisonedencoder scan``: find poisoning inputs in an unlabeled image folder (docs/SCAN.md).

For study scripts: :func:`filter_scores` (a filter's scores for a list of images),
:func:`threshold_verdicts` (crop_disagreement's threshold without labels), :func:`detection` (the
metrics against the truth), :func:`read_folder`, :func:`ground_truth` and :func:`scan` (the whole
command). None of them imports torch until it is called."""
from __future__ import annotations

from .detection import auroc, detection, roc_points, tpr_at_fpr
from .folder import read_folder, read_image
from .run import scan
from .scores import FILTERS, filter_scores, own_verdicts, threshold_verdicts
from .truth import ground_truth

__all__ = ["FILTERS", "auroc", "detection", "filter_scores", "ground_truth", "own_verdicts", "read_folder", "read_image",
           "roc_points", "scan", "threshold_verdicts", "tpr_at_fpr"]
