"""The rows of the claims table: one function per claim of the paper (or question beyond it), each
stating what was measured and reaching its verdict by the rules of :mod:`.verdicts`, fixed before
the data (docs/CLAIMS.md, "How a verdict is reached")."""
from __future__ import annotations

from ..compare import asr, flips_over_clean
from .formats import fmt_diff, fmt_mean, fmt_rate, line
from .results import ArmResult, gap
from .verdicts import (ABOVE, HIGH, IN_PART, LADDER, MARGIN, NOT, NOT_ABOVE, NOT_MEASURABLE, PENDING, POINT_ABOVE,
                       REPRODUCED, SMALL_GAP, Row, _final, _ready, _same_targets, above, differs, tests_disagree)


def targets_per_run(res: dict[str, ArmResult]) -> Row:
    row = Row("targets_per_run", "(threat model) Does attacking 10 targets per run (poisoning inputs about 30% of the "
              "clean set) instead of one (about 3%) change ASR at the same rate per target?", ("one_per_run", "poisonedencoder"))
    if not _ready(row, res):
        return row
    one, ten = res["one_per_run"], res["poisonedencoder"]
    d = _same_targets(ten, one)
    row.numbers = {"one_per_run": asr(one.outcomes), "ten_per_run": asr(ten.outcomes), "difference": d}
    row.measurement = (f"one per run ({100 * one.threat()['poisoning_rate']:.1f}% of the clean set): ASR "
                       f"{fmt_rate(asr(one.outcomes))}; {ten.targets_per_run():g} per run "
                       f"({100 * ten.threat()['poisoning_rate']:.1f}% of the clean set): "
                       f"{fmt_rate(asr({k: ten.outcomes[k] for k in one.outcomes if k in ten.outcomes}))} on the same "
                       f"targets; one - ten: {fmt_diff(d)}; PA one per run {fmt_mean(one.mean_over_seeds('PA'))}")
    _final(row, "difference measured" if differs(d) else "no difference measured",
           "the 95% interval of the paired difference " + ("excludes 0" if differs(d) else "includes 0") + tests_disagree(d))
    return row


def headline(res: dict[str, ArmResult]) -> str:
    """The arm of the headline row: one target per run where it measurably differs from the recipe."""
    tp = targets_per_run(res)
    return "one_per_run" if tp.verdict == "difference measured" else "poisonedencoder"


def high_asr(res: dict[str, ArmResult], arm: str | None = None) -> Row:
    """The paper's headline claim on ``arm`` (default: the recipe's runs); which of the two rows
    is the table's headline is :func:`headline`'s choice."""
    tp = targets_per_run(res)
    key = "high_asr" if arm is None else f"high_asr_{arm}"
    arm = arm or "poisonedencoder"
    alone = " (one target per run: the run's poisoning inputs are the rate per target)" if arm == "one_per_run" else ""
    row = Row(key, "PoisonedEncoder achieves high ASR while the poisoned encoder keeps its utility "
              f"(small CA - PA gap){alone}.", (arm, "poisonedencoder") if arm != "poisonedencoder" else (arm,))
    if not _ready(row, res):
        return row
    a, ref = res[arm], res["poisonedencoder"]
    r, g = asr(a.outcomes), gap(ref, "CA", "PA", a)
    row.numbers = {"ASR": r, "clean_ASR": asr(a.outcomes, clean=True), "CA_minus_PA": g}
    row.measurement = (f"ASR {fmt_rate(r)}, clean ASR {fmt_rate(asr(a.outcomes, clean=True))}; CA "
                       f"{fmt_mean(ref.mean_over_seeds('CA'))}, PA {fmt_mean(a.mean_over_seeds('PA'))}, "
                       f"CA - PA {fmt_mean(g, signed=True)} (t over {g['n']} seeds)")
    high = r["ci95"][0] >= HIGH
    small = g.get("ci95") is not None and g["ci95"][1] < SMALL_GAP
    verdict = REPRODUCED if high and small else IN_PART if high or small else NOT
    _final(row, verdict, f"ASR {'is' if high else 'is not'} high (lower end {'>=' if high else '<'} {HIGH}); the gap "
                         f"{'lies' if small else 'does not lie'} below {SMALL_GAP}")
    if tp.verdict not in ("difference measured", "no difference measured") and a.targets_per_run() > 1 and key == "high_asr":
        row.why += (f"; at poisoning inputs equal to {100 * a.threat()['poisoning_rate']:.1f}% of the clean set: whether "
                    "one target per run differs is not measured yet")
    return row


def beats(res: dict[str, ArmResult], key: str, other: str, claim: str) -> Row:
    """PoisonedEncoder against another attack on the same target inputs at the same targets per
    run (the recipe's): ``claim`` holds when it is higher by 0.2 (the interval above 0.2), in part
    when the point is."""
    arm = "poisonedencoder"
    row = Row(key, claim, (other, arm))
    if not _ready(row, res):
        return row
    pe, o = res[arm], res[other]
    d = _same_targets(o, pe)
    row.numbers = {"ASR": asr(o.outcomes), "difference": d, "craft_seconds": o.seconds("craft")}
    row.measurement = (f"{o.arm.label}: ASR {fmt_rate(asr(o.outcomes))}, PA {fmt_mean(o.mean_over_seeds('PA'))}, crafting "
                       f"{fmt_mean(o.seconds('craft'), 1)} s per run; PoisonedEncoder - it: {fmt_diff(d)}")
    if d["dASR"] is None:
        _final(row, NOT_MEASURABLE, "no target inputs in common")
    else:
        level = above(d)
        _final(row, LADDER[level], {ABOVE: f"the difference's interval lies above {MARGIN}",
                                    POINT_ABOVE: f"the difference is {MARGIN} or more but its interval reaches below {MARGIN}",
                                    NOT_ABOVE: f"the difference is below {MARGIN}"}[level])
    return row


def ineffective(res: dict[str, ArmResult], key: str, other: str, claim: str) -> Row:
    """Witches' Brew is ineffective: *reproduced* when the interval of its ASR minus the clean
    encoder's on the same targets ends below 0.2 (an effect of 0.2 or more ruled out, as the race's
    "evaded") and PoisonedEncoder is above it by 0.2 (:func:`beats`); *not reproduced* when its
    ASR is above the clean encoder's by 0.2 (the interval) or PoisonedEncoder is not above it by
    0.2 even at the point estimate; else *in part* (neither ruled out nor shown)."""
    row = beats(res, key, other, claim)
    if row.verdict == PENDING or row.verdict == NOT_MEASURABLE:
        return row
    o = res[other]
    over = flips_over_clean(o.outcomes)
    row.numbers["over_clean"] = over
    row.measurement += f"; it - clean encoder: {fmt_diff(over)}"
    beat = above(row.numbers["difference"])
    negligible = over["dASR"] is not None and over["dASR_hi"] < MARGIN
    effect = (f"it flips {MARGIN} or more above the clean encoder (interval)" if above(over) == ABOVE else
              f"its ASR above the clean encoder's is ruled out at {MARGIN} or more (the interval ends below {MARGIN})"
              if negligible else f"an effect of {MARGIN} or more above the clean encoder is not ruled out (the interval "
              f"reaches {over['dASR_hi']:+.2f})" if over["dASR"] is not None else "it is not paired with the clean encoder")
    said = (f"PoisonedEncoder is {'' if beat == ABOVE else 'not '}above it by {MARGIN} (interval)"
            if beat != POINT_ABOVE else f"PoisonedEncoder is above it by {MARGIN} at the point estimate only")
    row.verdict = (REPRODUCED if negligible and beat == ABOVE else
                   NOT if above(over) == ABOVE or beat == NOT_ABOVE else IN_PART)
    row.why = f"{effect}; {said}"
    return row


def attack_works(outcomes: dict) -> tuple[str, str]:
    """The one rule for "the attack works" (on a dataset, in a downstream task, under a pre-training
    method): *reproduced* when ASR is high and above the clean encoder's by 0.2 (:func:`above`, the
    interval); *in part* when it is above by 0.2, by the interval or the point estimate, but not
    high; else *not reproduced*. Returns the verdict and why."""
    r, over = asr(outcomes), flips_over_clean(outcomes)
    high, level = r["ci95"][0] >= HIGH, above(over)
    if high and level == ABOVE:
        return REPRODUCED, f"high ASR (lower end >= {HIGH}), above the clean encoder's by {MARGIN} (interval)"
    if level != NOT_ABOVE:
        return IN_PART, (f"ASR above the clean encoder's by {MARGIN} ({'interval' if level == ABOVE else 'point estimate only'})"
                         f", not high (lower end {r['ci95'][0]:.2f} < {HIGH})" if not high else
                         f"high ASR, above the clean encoder's by {MARGIN} at the point estimate only")
    rise = "not paired" if over["dASR"] is None else (f"{over['dASR']:+.2f} [{over['dASR_lo']:+.2f}, "
                                                      f"{over['dASR_hi']:+.2f}]")
    return NOT, f"ASR not above the clean encoder's by {MARGIN} (it - clean: {rise})"


def transfers(res: dict[str, ArmResult], method: str) -> Row:
    arm = f"method_{method}"
    row = Row(arm, f"The attack works when the victim pre-trains with {method} (the paper: contrastive methods; "
              f"{'beyond the paper: a non-contrastive method' if method in ('byol', 'simsiam') else 'MoCo v2 is contrastive'}).",
              (arm, "poisonedencoder"))
    if not _ready(row, res):
        return row
    m, ref = res[arm], res["poisonedencoder"]
    over, d = flips_over_clean(m.outcomes), _same_targets(ref, m)
    row.numbers = {"ASR": asr(m.outcomes), "over_clean": over, "vs_simclr": d,
                   "CA_minus_PA": gap(m, "CA", "PA")}
    row.measurement = (f"ASR {fmt_rate(asr(m.outcomes))}, clean ASR {fmt_rate(asr(m.outcomes, clean=True))}, CA - PA "
                       f"{fmt_mean(gap(m), signed=True)}; - SimCLR: {fmt_diff(d)}")
    verdict, why = attack_works(m.outcomes)
    as_simclr = d["dASR"] is not None and not differs(d)
    _final(row, verdict, why + ("; no difference from SimCLR measured" if as_simclr else "; it differs from SimCLR")
           + tests_disagree(d))
    return row


def defense(res: dict[str, ArmResult], name: str, ref_arm: str = "poisonedencoder") -> Row:
    arm = f"defense_{name}"
    row = Row(arm, f"Defense {name.replace('_small', ' (a quarter of the clean set)')} lowers ASR only at a cost in "
              "utility or clean data.", (arm, ref_arm))
    if not _ready(row, res):
        return row
    dres, ref = res[arm], res[ref_arm]
    d = _same_targets(ref, dres)
    pa = gap(dres, "PA", "PA", ref)  # PA with the defense - PA without
    rep = dres.defense()
    row.numbers = {"ASR": asr(dres.outcomes), "difference": d, "PA_change": pa, "defense": rep}
    cost = []
    if rep["removed"].get("mean") is not None:
        cost.append(f"removed {rep['removed']['mean']:.0f} inputs (precision {fmt_mean(rep['precision'], 2)}, "
                    f"recall {fmt_mean(rep['recall'], 2)})")
    if rep["clean_data_used"].get("mean"):
        cost.append(f"{rep['clean_data_used']['mean']:.0f} clean inputs used")
    if rep["seconds"].get("mean"):
        cost.append(f"the defense's own time {fmt_mean(rep['seconds'], 0)} s per run")
    control = ""
    if name.startswith("finetune"):  # CA there is the control's: the clean encoder fine-tuned on the same inputs
        control = f"; control CA {fmt_mean(dres.mean_over_seeds('CA'))}, control CA - PA {fmt_mean(gap(dres), signed=True)}"
        row.numbers["control_CA_minus_PA"] = gap(dres)
    row.measurement = (f"ASR {fmt_rate(asr(dres.outcomes))} (none: {fmt_rate(asr(ref.outcomes))}); with - without: "
                       f"{fmt_diff(d)}; PA change {fmt_mean(pa, signed=True)}{control}; " + "".join(f"{c}; " for c in cost)
                       + f"pre-training {fmt_mean(dres.seconds('pretrain'), 0)} s (none: "
                         f"{fmt_mean(ref.seconds('pretrain'), 0)} s)")
    lowers = d["dASR"] is not None and d["dASR_hi"] < 0
    pa_cost = pa.get("ci95") is not None and pa["ci95"][1] < 0
    data_cost = bool(rep["clean_data_used"].get("mean"))
    note = tests_disagree(d)
    if lowers and (pa_cost or data_cost):
        cost = "utility" if pa_cost else "clean-data"
        if data_cost:
            share = clean_data_share(dres)
            cost = (f"{cost} cost ({rep['clean_data_used']['mean']:.0f} clean inputs, "
                    f"{100 * share:.1f}% of the size of the pre-training set)" if share is not None else f"{cost} cost")
        else:
            cost += " cost"
        _final(row, REPRODUCED, f"it lowers ASR, at a {cost}{note}")
    elif lowers:
        _final(row, NOT, f"it lowers ASR with no PA loss measured and no clean data{note}")
    else:
        _final(row, IN_PART, f"no ASR reduction measured (consistent with an insufficient defense){note}")
    return row


def clean_data_share(a: ArmResult) -> float | None:
    """The clean inputs a defense needs (fine-tuning's) as a share of the size of the pre-training
    set it defends (clean plus poisoning inputs), the mean over runs."""
    shares = [m["defense"]["clean_data_used"] / (m["num_clean_inputs"] + m["num_poisoning_inputs"])
              for m in a.runs if (m.get("defense") or {}).get("clean_data_used")
              and m.get("num_clean_inputs") is not None and m.get("num_poisoning_inputs") is not None]
    return sum(shares) / len(shares) if shares else None


def rate_curve(res: dict[str, ArmResult], per_target_arms: list[tuple[float, str]]) -> Row:
    """ASR against the rate per target input, pooled per rate, and the logistic fit's rate at ASR 0.8."""
    from ...core.stats import logistic_fit

    row = Row("rate_curve", "(beyond the paper) ASR against the poisoning rate per target input; where it reaches 0.8.",
              tuple(a for _, a in per_target_arms))
    if not _ready(row, res, min_targets=0):
        return row
    per_run = res[row.arms[0]].targets_per_run()
    row.setting["budget"] = (f"{100 * per_target_arms[0][0]:g}% to {100 * per_target_arms[-1][0]:g}% of the clean set per "
                             f"target input ({per_run:g} target{'s' if per_run != 1 else ''} per run)")
    row.regime = line(row.setting)
    pts = [(r, asr(res[a].outcomes)) for r, a in per_target_arms]
    fit = logistic_fit([(r, x["k"], x["n"]) for r, x in pts], goal=0.8)
    row.numbers = {"points": [{"per_target": r, **x} for r, x in pts], "fit": fit}
    cross = (f"ASR 0.8 at {100 * fit['x_goal']:.2f}% per target [{100 * fit['x_goal_ci95'][0]:.2f}, "
             f"{100 * fit['x_goal_ci95'][1]:.2f}]" if fit and fit.get("x_goal") else "no crossing fitted")
    row.measurement = "; ".join(f"{100 * r:g}%: {fmt_rate(x)}" for r, x in pts) + f"; {cross}"
    _final(row, "measured", "logistic fit on log2 rate, delta-method interval" if fit else "")
    return row


def _not_here(row: Row, res: dict[str, ArmResult], unavailable: dict[str, str]) -> bool:
    """An arm with no finished run that this machine cannot run (``unavailable``: why): the row is
    not measurable here. An arm with finished runs is judged on them wherever it is read."""
    arm = row.arms[0]
    if (arm in res and res[arm].runs) or arm not in unavailable:
        return False
    row.verdict, row.why = NOT_MEASURABLE, unavailable[arm]
    return True


def dataset_row(res: dict[str, ArmResult], arm: str, label: str, unavailable: dict[str, str]) -> Row:
    row = Row(arm, f"The attack works on {label} (a dataset of the paper), with the recipe's encoder and budget.", (arm,))
    if _not_here(row, res, unavailable):
        return row
    if not _ready(row, res):
        return row
    a = res[arm]
    r, over = asr(a.outcomes), flips_over_clean(a.outcomes)
    row.numbers = {"ASR": r, "over_clean": over, "CA_minus_PA": gap(a)}
    row.measurement = (f"ASR {fmt_rate(r)}, clean ASR {fmt_rate(asr(a.outcomes, clean=True))}, CA "
                       f"{fmt_mean(a.mean_over_seeds('CA'))}, PA {fmt_mean(a.mean_over_seeds('PA'))}")
    _final(row, *attack_works(a.outcomes))
    return row


def two_tasks(res: dict[str, ArmResult], unavailable: dict[str, str]) -> Row:
    row = Row("two_tasks", "Target inputs in several downstream tasks can be attacked from one pre-training.",
              ("two_tasks",))
    if _not_here(row, res, unavailable):
        return row
    if not _ready(row, res):
        return row
    a = res["two_tasks"]
    parts, verdicts = [], []
    for ti in sorted({k[1] for k in a.outcomes}):
        o = {k: v for k, v in a.outcomes.items() if k[1] == ti}
        v, why = attack_works(o)
        verdicts.append((ti, v, why, asr(o)))
        parts.append(f"task {ti}: ASR {fmt_rate(verdicts[-1][3])}, clean {fmt_rate(asr(o, clean=True))}, it - clean "
                     f"{fmt_diff(flips_over_clean(o))}")
    row.measurement = "; ".join(parts)
    row.numbers = {"over_clean": flips_over_clean(a.outcomes),
                   "per_task": {str(ti): {"ASR": r, "verdict": v} for ti, v, _, r in verdicts}}
    order = (NOT, IN_PART, REPRODUCED)
    weakest = min((v for _, v, _, _ in verdicts), key=order.index)
    _final(row, weakest, "each task judged by the rule of the dataset rows, the row by its weakest task: "
           + "; ".join(f"task {ti} {v} ({why})" for ti, v, why, _ in verdicts))
    return row
