"""Evaluate: downstream classifiers on the frozen encoders, per target downstream task: CA, PA,
ASR, clean ASR, the target inputs' margins and cosines (pooled over tasks by
:func:`poisonedencoder.experiment.metrics.summarize`)."""
from __future__ import annotations

import numpy as np
from torch import nn

from ..attack.targets import Target
from ..data import ImageDataset
from ..downstream import classify_many
from .metrics import class_means, margin_summary, target_class_cosine, target_class_scores
from ..core.stats import rate


def train_subset(ds: ImageDataset, num_train: int | None, seed: int, task: int) -> np.ndarray:
    """The downstream training inputs of task ``task`` (all, or ``num_train`` drawn with the run's seed)."""
    idx = np.arange(len(ds.train))
    if num_train is not None and num_train < len(idx):
        idx = np.sort(np.random.default_rng([seed, task, 3]).choice(len(idx), size=num_train, replace=False))
    return idx


def evaluate_task(encoders: dict[str, nn.Module], snapshots: list[tuple[int, nn.Module]], ds: ImageDataset, task: int,
                  targets: list[Target], pretrain: dict, downstream: dict, seed: int, device: str = "cpu",
                  batched: bool = True) -> dict:
    """One task on the ``clean`` and ``poisoned`` encoders (and the poisoned one's ``snapshots``,
    ``(epoch, backbone)``): its metrics, with every target input of the task. Without a ``clean``
    encoder (an outside poisoned encoder evaluated alone) CA, clean ASR and the clean encoder's
    per-target values are ``None``: not measured.

    The features of all encoders and snapshots are extracted first and their classifiers trained
    together (:func:`poisonedencoder.downstream.train_classifiers`); ``batched=False`` trains them
    one after another (:func:`poisonedencoder.downstream.train_classifier`), the same classifiers
    up to floating-point rounding."""
    tt = [t for t in targets if t.task == task]
    tr_idx = train_subset(ds, downstream["num_train"], seed, task)
    target_idx = np.array([t.test_index for t in tt], dtype=int)
    test_mask = np.ones(len(ds.test), bool)
    test_mask[target_idx] = False  # CA / PA are measured on non-target inputs
    tcls = np.array([t.target_class for t in tt], dtype=int)
    tcls_true = np.array([t.true_class for t in tt], dtype=int)

    names = list(encoders)
    runs = classify_many([*encoders.values(), *(enc for _, enc in snapshots)], ds, tr_idx, pretrain["image_size"],
                         downstream, seed + task, device, batched,
                         [*(f"the {n} encoder" for n in names), *(f"the poisoned encoder's snapshot at epoch {e}"
                                                                  for e, _ in snapshots)])

    def accuracy_and_asr(pred: np.ndarray) -> tuple[float, float | None, dict, dict]:
        ok = pred[test_mask] == ds.test.labels[test_mask]
        acc_ci = rate(int(ok.sum()), int(test_mask.sum()))
        asr_ci = rate(int((pred[target_idx] == tcls).sum()), len(tt))
        return acc_ci["value"], asr_ci["value"], acc_ci, asr_ci  # one count each: the value is the interval's

    res = {"dataset": ds.name, "num_classes": ds.num_classes, "num_test_inputs": int(test_mask.sum())}
    preds, cos, cos_true, scores, intervals = {}, {}, {}, {}, {}
    if "clean" not in encoders:  # not measured
        res["CA"], intervals["CA"], res["clean_ASR"], intervals["clean_ASR"] = None, None, None, None
        preds["clean"] = [None] * len(tt)
        cos["clean"] = cos_true["clean"] = [None] * len(tt)
        scores["clean"] = {m: [None] * len(tt) for m in ("target_prob", "target_rank", "margin")}
    for name, (pred, ftr, fte, lg) in zip(names, runs[:len(names)], strict=True):
        acc, asr, acc_ci, asr_ci = accuracy_and_asr(pred)
        res["CA" if name == "clean" else "PA"], intervals["CA" if name == "clean" else "PA"] = acc, acc_ci
        res["clean_ASR" if name == "clean" else "ASR"], intervals["clean_ASR" if name == "clean" else "ASR"] = asr, asr_ci
        preds[name] = pred[target_idx]
        scores[name] = target_class_scores(lg[target_idx], tcls)
        means = class_means(ftr, ds.train.labels[tr_idx], ds.num_classes)
        center = ftr.mean(0)
        cos[name] = target_class_cosine(fte[target_idx], means, tcls, center) if len(tt) else []
        cos_true[name] = target_class_cosine(fte[target_idx], means, tcls_true, center) if len(tt) else []
    if snapshots:
        res["over_training"] = []
        for (epoch, _), (pred, *_) in zip(snapshots, runs[len(names):], strict=True):
            pa, asr, pa_ci, asr_ci = accuracy_and_asr(pred)
            res["over_training"].append({"epoch": epoch, "PA": pa, "ASR": asr, "intervals": {"PA": pa_ci, "ASR": asr_ci}})
        res["over_training"].append({"epoch": pretrain["epochs"], "PA": res["PA"], "ASR": res["ASR"],
                                     "intervals": {"PA": intervals["PA"], "ASR": intervals["ASR"]}})
    res["targets"] = [{"test_index": t.test_index, "true_class": t.true_class, "target_class": t.target_class,
                       "true_class_name": ds.classes[t.true_class], "target_class_name": ds.classes[t.target_class],
                       "clean_prediction": None if preds["clean"][k] is None else int(preds["clean"][k]),
                       "poisoned_prediction": int(preds["poisoned"][k]),
                       "clean_cosine": cos["clean"][k], "poisoned_cosine": cos["poisoned"][k],
                       "clean_cosine_true_class": cos_true["clean"][k],
                       "poisoned_cosine_true_class": cos_true["poisoned"][k],
                       **{f"{e}_{m}": scores[e][m][k] for e in ("clean", "poisoned")
                          for m in ("target_prob", "target_rank", "margin")}}
                      for k, t in enumerate(tt)]
    res["intervals"] = intervals
    res["margins"] = margin_summary(res["targets"])
    res["mean_cosine_clean"] = float(np.mean(cos["clean"])) if tt and "clean" in encoders else None
    res["mean_cosine_poisoned"] = float(np.mean(cos["poisoned"])) if tt else None
    return res
