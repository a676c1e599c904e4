"""Beyond the paper: the adaptive attacker against the defenses (the arms race).

One row per cell of attacker variant x defense (:data:`~.arms.RACE_VARIANTS` x
:data:`~.arms.RACE_DEFENSES`; the arms of :func:`~.arms.race_arms`, and the paper's own arms where
they measure a cell). Every cell is paired on the same target inputs with the paper's attacker
without a defense (the recipe's arm), and a defended cell also with the same attacker without a
defense; a column without the oracle is also paired, for the reader, with the same filter at the
oracle's budget (and the unfiltered encoder's with the clean encoder's threshold). Verdicts rest on the 95% interval of the paired difference of ASR, never on a point:

- a defended cell: **defense holds** when the interval against the paper's attacker without a
  defense lies below 0 and so does the one against the same attacker without a defense;
  **variant weaker** when only the first does (the variant's own cost, not the defense's work);
  **evaded** when no reduction against the paper's attacker is measured and the interval rules out
  one of 0.2 or more (its lower end above -0.2); else **no difference measured**;
- an attacker without a defense: **variant weaker** (interval below 0), **variant keeps the
  attack** (no loss measured, the interval's lower end above -0.2), else **no difference measured**;
- the paper's attacker without a defense is the reference: **measured**.
"""
from __future__ import annotations

from ..compare import asr
from .arms import FPR_DEFENSES, RACE, RACE_FPR, RACE_DEFENSES, RACE_VARIANTS, race_arm, race_cells
from .formats import fmt_diff, fmt_mean, fmt_rate
from .results import ArmResult, gap
from .verdicts import MARGIN, NOT_MEASURABLE, PENDING, Row, _final, _ready, _same_targets

HOLDS, EVADED, WEAKER, KEEPS, NO_DIFF, MEASURED = (
    "defense holds", "evaded", "variant weaker", "variant keeps the attack", "no difference measured", "measured")
FILTERS = ("aspect_ratio", "part_hash", "crop_disagreement", *FPR_DEFENSES)
"""The pre-processing filters: their verdicts on every input are scored (precision, recall)."""
SAID = {"crop_disagreement": "crop_disagreement (the oracle's budget)",
        "crop_disagreement_fpr": f"crop_disagreement without the oracle (fpr {RACE_FPR:g}, the clean encoder)",
        "crop_disagreement_fpr_unfiltered": f"crop_disagreement without the oracle or clean data (fpr {RACE_FPR:g}, "
                                            "an encoder pre-trained on the unfiltered set)"}
TICKS = {"aspect_ratio": "aspect_ratio", "part_hash": "part_hash", "crop_disagreement": "crop_disagr.\noracle budget",
         "large_crops": "large_crops", "crop_disagreement_fpr": "crop_disagr.\nfpr, clean enc.",
         "crop_disagreement_fpr_unfiltered": "crop_disagr.\nfpr, unfiltered enc.", "none": "none"}
"""The figure's tick labels (two lines where the column's name is long)."""
BESIDE = {"crop_disagreement_fpr": ("crop_disagreement",),
          "crop_disagreement_fpr_unfiltered": ("crop_disagreement", "crop_disagreement_fpr")}
BESIDE_SAID = {"crop_disagreement": "the same filter at the oracle's budget",
               "crop_disagreement_fpr": "the same threshold with the clean encoder"}
"""The cells a column without the oracle is also paired with (shown, not judged): the oracle's
budget, and for the unfiltered encoder the clean encoder's threshold."""
NOT_RUN = "not run: 0/30 without a defense"
"""A grid cell of a variant that is not measured against a column (:data:`~.arms.FPR_VARIANTS`)."""
TITLE = "Beyond the paper: the adaptive attacker"
WHAT = {"paper": "the paper's attacker", "square": "the shape-matched attacker (square)",
        "varied": "the varied-target attacker (varied)", "square_varied": "the shape-matched, varied-target attacker"}


def cells() -> list[tuple[str, str]]:
    """Every measured (variant, defense) of the race, in the table's order (variant by variant;
    :func:`~.arms.race_cells`)."""
    return race_cells()


def _below(d: dict) -> bool:
    return d["dASR"] is not None and d["dASR_hi"] < 0


def _within(d: dict) -> bool:
    return d["dASR"] is not None and d["dASR_hi"] >= 0 and d["dASR_lo"] > -MARGIN


def cell(res: dict[str, ArmResult], variant: str, defense: str) -> Row:
    """The row of one cell (module docstring)."""
    arm, ref, own = race_arm(variant, defense), race_arm("paper", "none"), race_arm(variant, "none")
    if (variant, defense) == ("paper", "none"):
        claim = "(beyond the paper) The arms race's reference: the paper's attacker without a defense."
    elif defense == "none":
        claim = f"(beyond the paper) Does {WHAT[variant]} keep the paper attacker's ASR without a defense?"
    else:
        claim = f"(beyond the paper) Does defense {SAID.get(defense, defense)} hold against {WHAT[variant]}?"
    beside = [(d, race_arm(variant, d)) for d in BESIDE.get(defense, ())]
    row = Row(f"race_{variant}_{defense}", claim, tuple(dict.fromkeys((arm, ref, own, *(a for _, a in beside)))), section=RACE)
    row.numbers = {"variant": variant, "defense": defense}
    if not _ready(row, res):
        return row
    c = res[arm]
    vs_ref = _same_targets(res[ref], c)
    row.numbers.update(ASR=asr(c.outcomes), vs_paper_none=vs_ref, seconds=c.total_seconds(),
                       PA=c.mean_over_seeds("PA"))
    parts = [f"ASR {fmt_rate(asr(c.outcomes))}"]
    if arm != ref:
        parts.append(f"- paper's attacker without defense: {fmt_diff(vs_ref)}")
    if defense != "none" and own != ref:
        vs_own = _same_targets(res[own], c)
        row.numbers["vs_same_none"] = vs_own
        parts.append(f"- same attacker without defense ({fmt_rate(asr(res[own].outcomes))}): {fmt_diff(vs_own)}")
    else:
        vs_own = vs_ref
    for d, a in beside:  # the same attacker against the same filter with the oracle's budget / the clean encoder
        row.numbers[f"vs_{d}"] = _same_targets(res[a], c)
        parts.append(f"- {BESIDE_SAID[d]} ({fmt_rate(asr(res[a].outcomes))}): {fmt_diff(row.numbers[f'vs_{d}'])}")
    if defense in FILTERS:
        det = c.detection()
        row.numbers["detection"] = det
        if det:
            parts.append(f"precision {fmt_rate(det['precision'])}, recall {fmt_rate(det['recall'])} (pooled over "
                         f"{det['runs']} run{'s' if det['runs'] != 1 else ''}; {det['flagged']:.0f} inputs removed per run, {det['poisons']:.0f} "
                         "poisoning inputs)")
    pa = f"PA {fmt_mean(c.mean_over_seeds('PA'))}"
    if defense != "none":
        change = gap(c, "PA", "PA", res[own])  # PA with the defense - PA of the same attacker without
        row.numbers["PA_change"] = change
        pa += f", change {fmt_mean(change, signed=True)}"
    parts.append(pa)
    filt = c.defense()["seconds"]
    parts.append(f"time per run {fmt_mean(row.numbers['seconds'], 0)} s (crafting and pre-training"
                 + (", the unfiltered encoder's pre-training included" if c.unfiltered_seconds() else "")
                 + (f", the filter's {fmt_mean(filt, 1)} s in it" if defense in FILTERS and filt.get("mean") is not None
                    else "") + ")")
    row.measurement = "; ".join(parts)
    if arm == ref:
        _final(row, MEASURED, "the reference every cell is paired with")
    elif vs_ref["dASR"] is None:
        _final(row, NOT_MEASURABLE, "no target inputs in common with the paper's attacker")
    elif defense == "none":
        _final(row, *((WEAKER, "ASR below the paper attacker's (the interval lies below 0)") if _below(vs_ref) else
                      (KEEPS, f"no loss measured, and the interval rules out one of {MARGIN} or more") if _within(vs_ref)
                      else (NO_DIFF, f"the interval includes 0 and reaches below -{MARGIN}")))
    elif _below(vs_ref) and _below(vs_own):
        _final(row, HOLDS, "ASR below the paper's attacker without defense and below the same attacker without "
                           "defense (both intervals below 0)")
    elif _below(vs_ref):
        _final(row, WEAKER, "ASR below the paper's attacker without defense, but not measured below the same "
                            "attacker without defense: the variant's cost, not the defense's work")
    elif _within(vs_ref):
        _final(row, EVADED, f"no reduction from the paper's attacker without defense measured, and the interval "
                            f"rules out one of {MARGIN} or more")
    else:
        _final(row, NO_DIFF, f"the interval includes 0 and reaches below -{MARGIN}")
    return row


def rows(res: dict[str, ArmResult]) -> list[Row]:
    return [cell(res, v, d) for v, d in cells()]


def _short(r: Row) -> str:
    """A cell of the grid: ASR, the filter's recall, the verdict."""
    if r.verdict == PENDING and "ASR" not in r.numbers:
        return "not measured yet"
    x = r.numbers["ASR"]
    s = f"ASR {x['value']:.2f} [{x['ci95'][0]:.2f}, {x['ci95'][1]:.2f}] ({x['k']}/{x['n']})"
    det = r.numbers.get("detection") or {}
    if det.get("recall", {}).get("value") is not None:
        s += f"; recall {det['recall']['value']:.2f}"
    return s + f"; {r.verdict}"


def grid(race_rows: list[Row]) -> str:
    """The race as one table: a row per attacker variant, a column per defense (markdown); a cell
    that is not planned (:func:`~.arms.race_cells`) says why."""
    by = {(r.numbers["variant"], r.numbers["defense"]): r for r in race_rows}
    planned = set(cells())
    head = "| attacker \\ defense | " + " | ".join(RACE_DEFENSES) + " |\n|---|" + "---|" * len(RACE_DEFENSES) + "\n"
    return head + "".join(f"| {v} | " + " | ".join(_short(by[v, d]) if (v, d) in planned else NOT_RUN for d in RACE_DEFENSES)
                          + " |\n" for v in RACE_VARIANTS if all((v, d) in by for d in RACE_DEFENSES if (v, d) in planned))


def figure(race_rows: list[Row], path) -> bool:
    """``path`` (PNG): ASR with 95% intervals per variant x defense (grouped bars), and the
    pre-processing filters' recall; written when at least one cell has a measurement."""
    by = {(r.numbers["variant"], r.numbers["defense"]): r for r in race_rows}
    if not any("ASR" in r.numbers for r in race_rows):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...core.io import atomic_write

    planned = set(cells())
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), dpi=120, gridspec_kw={"width_ratios": [len(RACE_DEFENSES), len(FILTERS)]})
    for ax, defenses, key, ylabel in ((axes[0], RACE_DEFENSES, "ASR", "ASR (95% Wilson)"),
                                      (axes[1], FILTERS, "recall", "filter recall (pooled, 95% Wilson)")):
        width = 0.8 / len(RACE_VARIANTS)
        for i, v in enumerate(RACE_VARIANTS):
            xs, ys, lo, hi = [], [], [], []
            for j, d in enumerate(defenses):
                r = by.get((v, d))
                if (v, d) not in planned:  # not run: said, so that no bar reads as missing
                    ax.text(j + (i - (len(RACE_VARIANTS) - 1) / 2) * width, 0.01, "not run", rotation=90, ha="center",
                            va="bottom", fontsize=5, color="0.4")
                x = (r.numbers.get("ASR") if key == "ASR" else (r.numbers.get("detection") or {}).get("recall")) if r else None
                if x and x.get("value") is not None:
                    xs.append(j + (i - (len(RACE_VARIANTS) - 1) / 2) * width)
                    ys.append(x["value"])
                    lo.append(x["value"] - x["ci95"][0])
                    hi.append(x["ci95"][1] - x["value"])
            if xs:
                ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=f"C{i}")
            for x, y, up in zip(xs, ys, hi, strict=True):  # the value: a bar at 0 is a measurement too
                ax.text(x, y + up + 0.01, f"{y:.2f}", ha="center", va="bottom", fontsize=5)
        ax.set_xticks(range(len(defenses)), [TICKS.get(d, d) for d in defenses], fontsize=7)
        ax.set_xlim(-0.5, len(defenses) - 0.5)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    from matplotlib.patches import Patch

    fig.legend([Patch(color=f"C{i}") for i in range(len(RACE_VARIANTS))], [f"attacker {v}" for v in RACE_VARIANTS],
               loc="lower center", ncol=len(RACE_VARIANTS), fontsize=7, frameon=False)  # below: no bar hidden
    axes[0].set_title("ASR per attacker and defense (missing bar: not measured yet; \"not run\": 0/30 without a defense)",
                      fontsize=8)
    axes[1].set_title("pre-processing filters: poisoning inputs removed", fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return True
