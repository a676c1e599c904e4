"""CA / PA / ASR and the target-to-class cosine similarity."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def accuracy(pred, labels) -> float:
    """Fraction of ``pred`` equal to ``labels`` (CA on a clean encoder, PA on a poisoned one)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float((pred == labels).mean())


def attack_success_rate(target_pred, target_classes) -> float:
    """ASR: fraction of target inputs classified as their target class."""
    return accuracy(target_pred, target_classes)


def class_means(features: torch.Tensor, labels, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(np.asarray(labels))
    return torch.stack([features[labels == c].mean(0) if (labels == c).any() else torch.zeros(features.shape[1])
                        for c in range(num_classes)])


def target_class_cosine(target_features: torch.Tensor, means: torch.Tensor, target_classes,
                        center: torch.Tensor | None = None) -> list[float]:
    """Cosine similarity between each target input's feature and its target class's mean feature.

    With ``center`` (e.g. the mean feature of the downstream training set) both are centred
    first: backbone features after a ReLU all lie in one orthant, where every raw cosine is
    high; centred, an unrelated input scores near 0 and an input of the class near its top.
    """
    tc = torch.as_tensor(np.asarray(target_classes), dtype=torch.long)
    m = means[tc]
    if center is not None:
        target_features, m = target_features - center, m - center
    return F.cosine_similarity(target_features, m, dim=1).tolist()


def target_class_scores(logits: torch.Tensor, target_classes) -> dict[str, list]:
    """Per target input, how close the downstream classifier is to calling it its target class.

    ``target_prob``: softmax probability of the target class; ``target_rank``: 1 + the number of
    classes with a larger logit (1 = predicted); ``margin``: the target class's logit minus the largest other
    logit (> 0 exactly when the target class is predicted, barring ties). Computed on the CPU.
    """
    lg = torch.as_tensor(logits).detach().float().cpu()
    tc = torch.as_tensor(np.asarray(target_classes), dtype=torch.long)
    if len(tc) == 0:
        return {"target_prob": [], "target_rank": [], "margin": []}
    own = lg.gather(1, tc[:, None])[:, 0]
    others = lg.scatter(1, tc[:, None], float("-inf"))
    return {"target_prob": torch.softmax(lg, 1).gather(1, tc[:, None])[:, 0].tolist(),
            "target_rank": (1 + (lg > own[:, None]).sum(1)).tolist(),
            "margin": (own - others.max(1).values).tolist()}


SCORES = ("margin", "target_prob", "target_rank")


def margin_summary(targets: list[dict]) -> dict:
    """Means over target inputs, with their t intervals, of the per-target scores of
    :func:`target_class_scores` on each encoder: ``{"clean": {"margin": ..., ...}, "poisoned": ...}``
    (targets from before these scores existed are skipped)."""
    from ..core.stats import mean_ci

    bounds = {"margin": (-math.inf, math.inf), "target_prob": (0.0, 1.0), "target_rank": (1.0, math.inf)}

    def summary(values, m):
        out = mean_ci(values)
        if out["ci95"]:  # a t interval of a probability or a rank, cut to the values it can take
            lo, hi = bounds[m]
            out["ci95"] = [max(lo, out["ci95"][0]), min(hi, out["ci95"][1])]
        return out

    return {e: {m: summary([t[f"{e}_{m}"] for t in targets if t.get(f"{e}_{m}") is not None], m) for m in SCORES}
            for e in ("clean", "poisoned")}


def summarize(per_task: list[dict]) -> dict:
    """The run's numbers from its tasks' (:func:`poisonedencoder.experiment.evaluation.evaluate_task`): CA and
    PA the mean over tasks, ASR and clean ASR over all target inputs of all tasks, with counts and
    95% intervals (Wilson; CA / PA of several tasks: their mean), and the margins over targets.
    Without a clean encoder (``CA`` of the tasks ``None``) CA and clean ASR are ``None``."""
    from ..core.stats import mean_of_rates, rate

    all_t = [t for r in per_task for t in r["targets"]]
    clean = all(r["CA"] is not None for r in per_task)
    hits = {"ASR": sum(t["poisoned_prediction"] == t["target_class"] for t in all_t),
            "clean_ASR": sum(t["clean_prediction"] == t["target_class"] for t in all_t)}
    intervals = {"CA": mean_of_rates([r["intervals"]["CA"] for r in per_task]) if clean else None,
                 "PA": mean_of_rates([r["intervals"]["PA"] for r in per_task]),
                 "ASR": rate(hits["ASR"], len(all_t)),
                 "clean_ASR": rate(hits["clean_ASR"], len(all_t)) if clean else None}
    return {
        "CA": float(np.mean([r["CA"] for r in per_task])) if clean else None,
        "PA": float(np.mean([r["PA"] for r in per_task])),
        "ASR": intervals["ASR"]["value"],     # one count: the interval's
        "clean_ASR": intervals["clean_ASR"]["value"] if clean else None,
        "num_targets": len(all_t),
        "intervals": intervals,
        "margins": margin_summary(all_t),  # per-target pull toward the target class, on both encoders
    }


def threat_model(num_poisoning_inputs: float, num_clean_inputs: float, num_targets: float) -> dict:
    """The attacker's budget, as a reader of the paper weighs it, named by what it divides by:

    - ``poisoning_rate``: poisoning inputs over the **clean** pre-training inputs, all target inputs
      together (``attack.poisoning_rate``: "poisoning inputs equal to 29.7% of the clean set");
    - ``poisoning_rate_per_target``: the same over the number of target inputs the run attacks;
    - ``poisoning_share``: poisoning inputs over the **whole** pre-training set (clean plus
      poisoning inputs: "22.9% of the pre-training set")."""
    total = num_poisoning_inputs / num_clean_inputs if num_clean_inputs else None
    per = total / num_targets if total is not None and num_targets else None
    whole = num_poisoning_inputs + num_clean_inputs
    return {"poisoning_rate": total, "poisoning_rate_per_target": per,
            "poisoning_share": num_poisoning_inputs / whole if whole else None}


def targets_per_run(m: dict) -> float:
    """Target inputs per run of a run's (or a run over seeds': per seed) metrics."""
    return m["num_targets"] / max(1, len(m.get("seeds") or [0]))


def rates_of(m: dict) -> dict:
    """``threat_model`` of a run's (or a run over seeds') metrics; metrics written before the
    per-target rate or the share of the pre-training set were recorded get them from their counts."""
    total = m.get("poisoning_rate")
    per = m.get("poisoning_rate_per_target")
    if per is None and total is not None:
        per = total / targets_per_run(m)
    share = m.get("poisoning_share")
    if share is None and m.get("num_poisoning_inputs") is not None and m.get("num_clean_inputs") is not None:
        share = threat_model(m["num_poisoning_inputs"], m["num_clean_inputs"], 1)["poisoning_share"]
    return {"poisoning_rate": total, "poisoning_rate_per_target": per, "poisoning_share": share}


def rate_words(rate: float, share: float | None, per_target: float | None = None, nd: int = 1) -> str:
    """``poisoning inputs equal to 29.7% of the clean set (22.9% of the pre-training set), 3.0% per
    target input``: the budget in words, each percentage with what it divides by."""
    out = f"poisoning inputs equal to {100 * rate:.{nd}f}% of the clean set"
    if share is not None:
        out += f" ({100 * share:.{nd}f}% of the pre-training set)"
    if per_target is not None:
        out += f", {100 * per_target:.{nd}f}% per target input"
    return out


def threat_line(m: dict, per_seed: bool = False) -> str:
    """``poisoning inputs equal to 29.70% of the clean set (22.90% of the pre-training set), 2.97% per
    target input (400 poisoning inputs beside 1347 clean inputs; 10 target inputs)``: the line every
    table and report carries."""
    r, per_run_targets = rates_of(m), targets_per_run(m)
    seed = " per seed" if per_seed else ""
    return (rate_words(r["poisoning_rate"], r["poisoning_share"], r["poisoning_rate_per_target"], nd=2)
            + f" ({m['num_poisoning_inputs']:.0f} poisoning inputs beside {m['num_clean_inputs']:.0f} clean "
              f"pre-training inputs{seed}; {per_run_targets:.0f} target input{'s' if per_run_targets != 1 else ''}{seed})")
