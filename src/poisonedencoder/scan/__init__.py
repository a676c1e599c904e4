"""``poisonedencoder scan``: find poisoning inputs in an unlabeled image folder (docs/SCAN.md).

For study scripts: :func:`~.scores.filter_scores` (a filter's scores for a list of images),
:func:`~.scores.threshold_verdicts` (a threshold without labels), :func:`~.detection.detection`
(the metrics against the truth), :func:`~.folder.read_folder` and :func:`~.run.scan` (the whole
command). Imported when first used, so that the command line starts fast."""
from __future__ import annotations

_PUBLIC = {"scan": "run", "read_folder": "folder", "read_image": "folder", "filter_scores": "scores",
           "threshold_verdicts": "scores", "own_verdicts": "scores", "FILTERS": "scores", "detection": "detection",
           "auroc": "detection", "tpr_at_fpr": "detection", "roc_points": "detection", "ground_truth": "truth"}


def __getattr__(name: str):
    if name in _PUBLIC:
        from importlib import import_module

        return getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
