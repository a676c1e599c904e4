"""A sweep's table: one flat row per value (the columns of sweep.csv) with its intervals and the
paired comparison with the reference value, and the same rows as a Markdown table (sweep.md).
Definitions: docs/DESIGN.md, "Uncertainty"."""
from __future__ import annotations

from .compare import outcomes, paired
from ..experiment.metrics import rates_of
from ..core.stats import fmt_ci

ALPHA = 0.05


def summarize(runs: list[tuple], key: str, ref: int = 0) -> list[dict]:
    """One flat row per value (the columns of sweep.csv) from ``(value, cfg, metrics)``; the paired
    comparison with ``runs[ref]`` where both ran on the same target inputs."""
    ref_value, ref_cfg, ref_m = runs[ref]
    ref_t = outcomes(ref_m, ref_cfg["seed"])
    results = []
    for v, cfg, m in runs:
        iv, mg, o = m.get("intervals", {}), m.get("margins"), m.get("over_seeds")
        r = {key: v}
        for k in ("CA", "PA", "ASR", "clean_ASR"):
            r[k] = m[k]
            x = iv.get(k) or {}
            r[f"{k}_k"], r[f"{k}_n"] = x.get("k"), x.get("n")
            r[f"{k}_lo"], r[f"{k}_hi"] = (x["ci95"] if x.get("ci95") else (None, None))
        r.update(rates_of(m))
        r["num_targets"] = m["num_targets"]
        r["seeds"] = " ".join(str(s) for s in m.get("seeds", [cfg["seed"]]))
        sm = (o or {}).get("ASR") or {}
        r["ASR_seed_mean"] = sm.get("mean") if o else None
        r["ASR_seed_lo"], r["ASR_seed_hi"] = (sm["ci95"] if o and sm.get("ci95") else (None, None))
        for e in ("clean", "poisoned"):
            for sc, name in (("margin", "margin"), ("target_prob", "prob"), ("target_rank", "rank")):
                r[f"{name}_{e}"] = mg[e][sc]["mean"] if mg else None
        pm = mg["poisoned"]["margin"] if mg else {}
        r["margin_poisoned_lo"], r["margin_poisoned_hi"] = (pm["ci95"] if pm.get("ci95") else (None, None))
        r["cosine_clean"] = _mean(t["mean_cosine_clean"] for t in m["tasks"])
        r["cosine_poisoned"] = _mean(t["mean_cosine_poisoned"] for t in m["tasks"])
        r["reference"] = ref_value
        r.update(paired(ref_t, outcomes(m, cfg["seed"])) if not (v is ref_value and cfg is ref_cfg) else paired({}, {}))
        r.update({f"defense_{k}": m.get("defense", {}).get(k) for k in ("removed", "precision", "recall", "clean_data_used")})
        results.append(r)
    return results


def _ci(r: dict, k: str, nd: int = 3) -> str:
    if r.get(k) is None:
        return "-"
    lo, hi = r.get(f"{k}_lo"), r.get(f"{k}_hi")
    return fmt_ci(r[k], [lo, hi] if lo is not None else None, nd)


def _rate_count(r: dict, k: str) -> str:
    """``0.20 [0.06, 0.51] (2/10)``."""
    if r.get(k) is None:
        return "-"
    cnt = f" ({r[k + '_k']}/{r[k + '_n']})" if r.get(k + "_n") is not None else ""
    return _ci(r, k, 2) + cnt


def _signed(r: dict, k: str, nd: int) -> str:
    """``+0.10 [-0.12, 0.33] p=0.480`` with ``*`` where p < 0.05."""
    if r.get(k) is None:
        return "-"
    ci = f" [{r[k + '_lo']:+.{nd}f}, {r[k + '_hi']:+.{nd}f}]" if r.get(k + "_lo") is not None else ""
    p = r.get(k + "_p")
    return f"{r[k]:+.{nd}f}{ci}" + (f" p={p:.3f}{' *' if p < ALPHA else ''}" if p is not None else "")


def markdown_table(results: list[dict], key: str) -> str:
    """The sweep as a Markdown table: CA, PA, ASR and the clean encoder's ASR with their 95% intervals,
    the margin, the paired differences against the reference value (``*``: significant at 0.05),
    the target-class cosine and, where a defense ran, what it removed, how well, and the clean data used."""
    def f(v, nd=3):
        return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

    defended = any(r.get("defense_removed") is not None or r.get("defense_clean_data_used") for r in results)
    seeds = any(r.get("ASR_seed_mean") is not None for r in results)
    ref = next((r.get("reference") for r in results if "reference" in r), None)
    head = [key, "CA [95% CI]", "PA [95% CI]", "ASR [95% CI] (k/n)", "clean ASR [95% CI] (k/n)"]
    if seeds:
        head += ["ASR mean of seeds [t]"]
    head += ["margin clean -> poisoned [95% CI]", f"Δ ASR vs {ref} [95% CI], McNemar p",
             f"Δ margin vs {ref} [95% CI], paired t p", "centred cos. (clean -> poisoned)"]
    if defended:
        head += ["removed", "precision", "recall", "clean data used"]
    head += ["poisoning inputs / clean set", "per target input", "share of the pre-training set"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [str(r[key]), _ci(r, "CA"), _ci(r, "PA"), _rate_count(r, "ASR"), _rate_count(r, "clean_ASR")]
        if seeds:
            row += [_ci({"x": r.get("ASR_seed_mean"), "x_lo": r.get("ASR_seed_lo"), "x_hi": r.get("ASR_seed_hi")}, "x", 2)]
        margin = "-" if r.get("margin_poisoned") is None else f"{r['margin_clean']:.2f} -> {_ci(r, 'margin_poisoned', 2)}"
        is_ref = str(r[key]) == str(ref) and r.get("dASR") is None
        row += [margin, "(reference)" if is_ref else _signed(r, "dASR", 2), "(reference)" if is_ref else _signed(r, "dmargin", 2),
                f"{f(r.get('cosine_clean'), 2)} -> {f(r.get('cosine_poisoned'), 2)}"]
        if defended:
            row += [f(r.get("defense_removed")), f(r.get("defense_precision")), f(r.get("defense_recall")),
                    f(r.get("defense_clean_data_used"))]
        row += [f(r.get("poisoning_rate"), 4), f(r.get("poisoning_rate_per_target"), 4), f(r.get("poisoning_share"), 4)]
        lines.append("| " + " | ".join(row) + " |")
    n = next((r.get("paired_n") for r in results if r.get("paired_n")), None)
    lines += ["", f"Rates: value [95% Wilson interval] (k/n){', pooled over seeds' if seeds else ''}. "
              f"Δ: paired difference against `{key}={ref}` over the same {n or ''} target inputs "
              "(same seeds, target inputs and target classes): ASR with Newcombe's interval and McNemar's exact p, "
              f"mean margin with a paired t interval; * marks p < {ALPHA}. "
              "Margin: target-class logit minus the largest other logit (mean over target inputs)."]
    return "\n".join(lines) + "\n"


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return round(sum(v) / len(v), 4) if v else None
