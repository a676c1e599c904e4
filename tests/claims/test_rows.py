"""The verdict rules of the claims table on known cases (docs/CLAIMS.md, "How a verdict is reached")."""
import pytest

from poisonedencoder.studies.claims import build_rows
from poisonedencoder.studies.claims.arms import Arm
from poisonedencoder.studies.claims.results import ArmResult
from poisonedencoder.studies.claims import rows as R
from poisonedencoder.studies.compare import Outcome

CFG = {"pretrain": {"algorithm": "simclr", "backbone": "cnn7", "width": 16, "epochs": 500, "image_size": 16},
       "pretrain_data": {"dataset": "digits"}}


def _arm(name, flips, clean=None, ca=(0.99, 0.99, 0.99), pa=(0.985, 0.99, 0.988), per_run=10, defense=None):
    """An arm with 30 target inputs over seeds 0-2 (10 each), ``flips[i]`` of target i."""
    clean = clean or [0] * len(flips)
    out = {(i // 10, 0, i, 1): Outcome(bool(f), 1.0 if f else -1.0, bool(c)) for i, (f, c) in enumerate(zip(flips, clean, strict=True))}
    runs = [{"_seed": s, "CA": ca[s], "PA": pa[s], "num_targets": per_run, "num_poisoning_inputs": 40 * per_run,
             "num_clean_inputs": 1347, "poisoning_rate": 40 * per_run / 1347, "_seconds": {"pretrain": 200.0, "craft": 1.0}, "defense": defense or {}}
            for s in range(3)]
    return ArmResult(Arm(name, name), out, runs, 3, CFG)


def test_high_asr_with_a_small_gap_is_reproduced_and_each_half_alone_is_in_part():
    res = {"poisonedencoder": _arm("poisonedencoder", [1] * 28 + [0] * 2)}
    row = R.high_asr(res)
    assert row.verdict == R.REPRODUCED, row.why                     # 28/30: lower end 0.79; gap 0.002 +- small
    assert ("poisoning inputs equal to 29.7% of the clean set (22.9% of the pre-training set), 3.0% per target input "
            "(10 targets per run)") in row.regime  # 400 / 1347 and 400 / 1747
    res = {"poisonedencoder": _arm("poisonedencoder", [1] * 28 + [0] * 2, pa=(0.90, 0.91, 0.92))}
    assert R.high_asr(res).verdict == R.IN_PART                     # a 8-point utility loss
    res = {"poisonedencoder": _arm("poisonedencoder", [1] * 15 + [0] * 15)}
    assert R.high_asr(res).verdict == R.IN_PART                     # 0.5: not high; the gap is small
    res = {"poisonedencoder": _arm("poisonedencoder", [1] * 15 + [0] * 15, pa=(0.90, 0.91, 0.92))}
    assert R.high_asr(res).verdict == R.NOT


def test_the_one_per_run_row_takes_ca_from_the_recipe_and_pa_from_its_own_runs():
    ten = _arm("poisonedencoder", [1] * 28 + [0] * 2)
    one = _arm("one_per_run", [1] * 12 + [0] * 18, per_run=1, pa=(0.99, 0.992, 0.99))
    row = R.high_asr({"poisonedencoder": ten, "one_per_run": one}, "one_per_run")
    assert row.key == "high_asr_one_per_run" and row.verdict == R.IN_PART  # 12/30 is not high; no PA loss
    assert "equal to 3.0% of the clean set (2.9% of the pre-training set), 3.0% per target input (1 target per run)" \
        in row.regime  # 40 / 1347 and 40 / 1387
    assert row.numbers["CA_minus_PA"]["mean"] == pytest.approx(0.99 - (0.99 + 0.992 + 0.99) / 3)


def test_fewer_than_thirty_targets_or_a_missing_arm_gives_no_verdict():
    few = _arm("poisonedencoder", [1] * 20)
    few.outcomes = dict(list(few.outcomes.items())[:20])
    assert R.high_asr({"poisonedencoder": few}).verdict == R.PENDING
    row = R.beats({"poisonedencoder": _arm("poisonedencoder", [1] * 30)}, "vs_icp", "icp", "x")
    assert row.verdict == R.PENDING and row.why == "to run: icp"


def test_beating_icp_by_two_tenths_needs_the_interval_above_two_tenths():
    pe = _arm("poisonedencoder", [1] * 27 + [0] * 3)
    assert R.beats({"poisonedencoder": pe, "icp": _arm("icp", [0] * 30)}, "k", "icp", "x").verdict == R.REPRODUCED
    # ICP at 0.6 on the same targets: the difference 0.3 has an interval reaching below 0.2
    assert R.beats({"poisonedencoder": pe, "icp": _arm("icp", [1] * 18 + [0] * 12)}, "k", "icp", "x").verdict == R.IN_PART
    assert R.beats({"poisonedencoder": pe, "icp": _arm("icp", [1] * 27 + [0] * 3)}, "k", "icp", "x").verdict == R.NOT


def _wb(pe_flips, wb_flips, wb_clean=None):
    res = {"poisonedencoder": _arm("poisonedencoder", pe_flips), "witches_brew": _arm("witches_brew", wb_flips, wb_clean)}
    return R.ineffective(res, "wb", "witches_brew", "x")


def test_witches_brew_is_ineffective_only_where_an_effect_of_two_tenths_is_ruled_out_and_poisonedencoder_beats_it():
    pe = [1] * 27 + [0] * 3
    row = _wb(pe, [0] * 30)                                        # 0/30: it - clean 0 [-0.11, +0.11]
    assert row.verdict == R.REPRODUCED and row.numbers["over_clean"]["dASR_hi"] < 0.2, row.why
    row = _wb(pe, [1] * 2 + [0] * 28, [1] * 2 + [0] * 28)          # its flips are the clean encoder's
    assert row.verdict == R.REPRODUCED, row.why
    # 4/30 against 0/30: no rise of 0.2 shown, but none ruled out either: "no effect measured" is not "ineffective"
    row = _wb(pe, [1] * 4 + [0] * 26)
    over = row.numbers["over_clean"]
    assert over["dASR"] < 0.2 <= over["dASR_hi"] and row.verdict == R.IN_PART, row.why
    assert "not ruled out" in row.why
    row = _wb(pe, [1] * 27 + [0] * 3)                              # as strong as PoisonedEncoder: effective
    assert row.verdict == R.NOT and "flips 0.2 or more above the clean encoder" in row.why


def test_witches_brew_without_flips_is_not_ineffective_when_poisonedencoder_does_not_beat_it():
    row = _wb([1] * 3 + [0] * 27, [0] * 30)      # no effect (0/30), but PoisonedEncoder itself flips 3/30
    assert row.numbers["over_clean"]["dASR_hi"] < 0.2 and row.numbers["difference"]["dASR"] < 0.2
    assert row.verdict == R.NOT and "PoisonedEncoder is not above it" in row.why


def test_a_verdict_needs_three_seeds_as_well_as_thirty_targets():
    two_seeds = _arm("poisonedencoder", [1] * 30)
    two_seeds.outcomes = {(k[0] % 2, *k[1:]): v for k, v in two_seeds.outcomes.items()}  # 30 targets over seeds 0, 1
    assert two_seeds.n == 30 and two_seeds.seeds() == [0, 1]
    row = R.high_asr({"poisonedencoder": two_seeds})
    assert row.verdict == R.PENDING and "2 seeds, fewer than the 3" in row.why
    few = _arm("icp", [0] * 30)                   # the other arm of a row is checked too
    few.outcomes = dict(list(few.outcomes.items())[:20])
    row = R.beats({"poisonedencoder": _arm("poisonedencoder", [1] * 30), "icp": few}, "vs_icp", "icp", "x")
    assert row.verdict == R.PENDING and "icp: 20 target inputs, fewer than the 30" in row.why


@pytest.mark.parametrize("flips,clean,verdict", [
    ([1] * 10 + [0] * 20, None, R.IN_PART),                # Facemask 32 px: +0.33 [+0.17..], above 0.2 by its point
    ([1] * 11 + [0] * 19, [1] + [0] * 29, R.IN_PART),      # Facemask 16 px: 11/30 against 1/30
    ([1] * 5 + [0] * 25, None, R.NOT),                     # EuroSAT 32 px: +0.17, below 0.2
    ([1] * 28 + [0] * 2, None, R.REPRODUCED),              # high, and above chance by 0.2
])
def test_datasets_and_methods_are_judged_by_one_rule(flips, clean, verdict):
    """"The attack works" on a dataset and under another method: the same outcomes, the same verdict."""
    pe = _arm("poisonedencoder", [1] * 27 + [0] * 3)
    ds = R.dataset_row({"facemask_32px": _arm("facemask_32px", flips, clean)}, "facemask_32px", "Facemask", {})
    method = R.transfers({"poisonedencoder": pe, "method_byol": _arm("method_byol", flips, clean)}, "byol")
    assert ds.verdict == method.verdict == verdict, (ds.why, method.why)
    assert R.attack_works(_arm("x", flips, clean).outcomes)[0] == verdict


def test_two_tasks_are_judged_task_by_task():
    def arm(task0, task1):  # 15 target inputs per task, 5 per seed and task
        a = _arm("two_tasks", [0] * 30)
        flips = {0: task0, 1: task1}
        a.outcomes = {(i % 3, ti, i, 1): Outcome(bool(flips[ti][i]), 1.0, False) for ti in (0, 1) for i in range(15)}
        return a

    row = R.two_tasks({"two_tasks": arm([1] * 13 + [0] * 2, [1] + [0] * 14)}, {})
    assert row.numbers["over_clean"]["dASR_lo"] >= 0.2          # pooled, the attack is above chance by 0.2 ...
    assert row.verdict == R.NOT and "task 1 not reproduced" in row.why  # ... but not in task 1 (1/15)
    row = R.two_tasks({"two_tasks": arm([1] * 15, [1] * 15)}, {})
    assert row.verdict == R.REPRODUCED                          # 15/15 each: lower end 0.80
    row = R.two_tasks({"two_tasks": arm([1] * 15, [1] * 9 + [0] * 6)}, {})
    assert row.verdict == R.IN_PART and "task 1 reproduced in part" in row.why


def test_fine_tuning_states_its_clean_data_as_a_share_of_the_pre_training_set():
    none = _arm("finetune_none", [1] * 22 + [0] * 8)
    ft = _arm("defense_finetune", [1] * 9 + [0] * 21, defense={"clean_data_used": 337})
    for m in ft.runs:
        m["num_clean_inputs"] = 1010
    row = R.defense({"finetune_none": none, "defense_finetune": ft}, "finetune", "finetune_none")
    assert row.verdict == R.REPRODUCED
    assert "337 clean inputs, 23.9% of the size of the pre-training set" in row.why  # 337 / (1010 + 400)


def test_where_mcnemar_and_the_interval_disagree_the_interval_decides_and_the_row_says_so():
    """overlapping_views on digits: 27/30 -> 20/30 with 9 and 2 discordant pairs: Newcombe's interval
    excludes 0, McNemar's exact p = 2 * 67 / 2048 = 0.065."""
    pe = [1] * 27 + [0] * 3
    defended = [0] * 9 + [1] * 18 + [1] * 2 + [0]
    row = R.defense({"poisonedencoder": _arm("poisonedencoder", pe), "defense_x": _arm("defense_x", defended)}, "x")
    d = row.numbers["difference"]
    assert d["dASR_hi"] < 0 and d["dASR_p"] == pytest.approx(2 * 67 / 2048)
    assert row.verdict == R.NOT and "the interval decides" in row.why and "0.0654 is not below 0.05" in row.why
    assert R.tests_disagree({"dASR": 0.1, "dASR_lo": -0.05, "dASR_hi": 0.3, "dASR_p": 0.5}) == ""


def test_the_markdown_states_the_regime_once_and_each_row_what_differs():
    from poisonedencoder.studies.claims import markdown

    pe = _arm("poisonedencoder", [1] * 27 + [0] * 3)
    other = _arm("method_mocov2", [1] * 13 + [0] * 17)
    other.config = {**CFG, "pretrain": {**CFG["pretrain"], "algorithm": "mocov2"}}
    rows = [R.high_asr({"poisonedencoder": pe}), R.transfers({"poisonedencoder": pe, "method_mocov2": other}, "mocov2")]
    md = markdown(rows)
    assert md.count("digits 16px") == 1 and md.count("(22.9% of the pre-training set)") == 1
    assert md.startswith("**Regime of every row**")
    lines = [ln for ln in md.splitlines() if ln.startswith("| ") and "**" in ln]
    assert "| as above |" in lines[0] and "| mocov2 / cnn7/16 |" in lines[1]


def test_targets_per_run_is_a_paired_comparison_on_the_same_targets():
    one = _arm("one_per_run", [1] * 20 + [0] * 10, per_run=1)
    ten = _arm("poisonedencoder", [1] * 20 + [0] * 10)
    row = R.targets_per_run({"one_per_run": one, "poisonedencoder": ten})
    assert row.verdict == "no difference measured" and row.numbers["difference"]["paired_n"] == 30
    assert "one per run (3.0% of the clean set)" in row.measurement
    assert "10 per run (29.7% of the clean set)" in row.measurement
    assert R.headline({"one_per_run": one, "poisonedencoder": ten}) == "poisonedencoder"
    one = _arm("one_per_run", [0] * 30, per_run=1)
    res = {"one_per_run": one, "poisonedencoder": ten}
    assert R.targets_per_run(res).verdict == "difference measured" and R.headline(res) == "one_per_run"


def test_a_defense_that_lowers_asr_for_free_contradicts_the_paper():
    pe = _arm("poisonedencoder", [1] * 27 + [0] * 3)
    free = _arm("defense_x", [0] * 30)
    assert R.defense({"poisonedencoder": pe, "defense_x": free}, "x").verdict == R.NOT
    costly = _arm("defense_x", [0] * 30, pa=(0.90, 0.905, 0.91))
    assert R.defense({"poisonedencoder": pe, "defense_x": costly}, "x").verdict == R.REPRODUCED
    data = _arm("defense_x", [0] * 30, defense={"clean_data_used": 300})
    assert R.defense({"poisonedencoder": pe, "defense_x": data}, "x").verdict == R.REPRODUCED
    useless = _arm("defense_x", [1] * 27 + [0] * 3)
    assert R.defense({"poisonedencoder": pe, "defense_x": useless}, "x").verdict == R.IN_PART


def test_the_table_has_one_row_per_claim_and_says_what_is_not_measurable():
    cfg = {"attack": {"poisoning_rate": 0.3}, "tasks": [{"num_targets": 10, "targets": None}]}
    away = {a: "not on this machine" for a in ("eurosat_16px", "eurosat_32px", "facemask_16px", "facemask_32px", "two_tasks")}
    rows = build_rows(cfg, {"poisonedencoder": _arm("poisonedencoder", [1] * 27 + [0] * 3)}, away)
    keys = [r.key for r in rows]
    assert keys[:4] == ["targets_per_run", "high_asr", "high_asr_one_per_run", "vs_icp"] and len(set(keys)) == len(keys)
    assert rows[1].claim.startswith("**Headline.**")  # no one-per-run difference measured: the recipe's row
    assert {r.verdict for r in rows if r.key.startswith(("eurosat", "facemask", "two_tasks"))} == {R.NOT_MEASURABLE}
    curve = next(r for r in rows if r.key == "rate_curve")
    assert curve.why == "to run: rate_0.005, rate_0.01, rate_0.02, rate_0.05"  # 3% is the recipe's own point


def test_rate_curve_fits_where_asr_reaches_the_goal():
    res = {f"r{i}": _arm(f"r{i}", [1] * k + [0] * (30 - k)) for i, k in enumerate((3, 10, 20, 27, 29))}
    row = R.rate_curve(res, [(r, f"r{i}") for i, r in enumerate((0.005, 0.01, 0.02, 0.03, 0.05))])
    fit = row.numbers["fit"]
    assert 0.01 < fit["x_goal"] < 0.05 and fit["x_goal_ci95"][0] < fit["x_goal"] < fit["x_goal_ci95"][1]
    assert row.measurement.startswith("0.5%: 3/30") and row.verdict == "measured"


@pytest.mark.parametrize("method,verdict", [("mocov2", R.REPRODUCED), ("byol", R.NOT)])
def test_transfer_to_a_method_needs_asr_above_chance(method, verdict):
    pe = _arm("poisonedencoder", [1] * 27 + [0] * 3)
    flips = [1] * 26 + [0] * 4 if verdict == R.REPRODUCED else [1] * 2 + [0] * 28
    assert R.transfers({"poisonedencoder": pe, f"method_{method}": _arm(f"method_{method}", flips)}, method).verdict == verdict


def test_fine_tuning_arms_leave_the_defender_clean_inputs_pre_training_did_not_use():
    from poisonedencoder.studies.claims.arms import finetune_arms

    whole = {"pretrain_data": {"num_images": None}}
    none, full, small = finetune_arms(whole, 1347)  # digits: pre-training used every train input
    assert none.overrides == ("pretrain_data.num_images=1010",)
    assert "defense.finetune.num_clean=337" in full.overrides and "defense.finetune.control=true" in full.overrides
    assert "pretrain_data.num_images=1010" in full.overrides and "defense.finetune.num_clean=84" in small.overrides
    none, full, _ = finetune_arms({"pretrain_data": {"num_images": 600}}, 1347)  # room left: the recipe's own set
    assert none.overrides == () and "defense.finetune.num_clean=747" in full.overrides


def test_a_defense_row_reads_cleanly_and_its_times_are_not_negative():
    """An in-training defense (no inputs removed, no own time) leaves no empty field in the
    measurement; the t interval of times that vary a lot is cut at 0."""
    import re

    pe = _arm("poisonedencoder", [1] * 27 + [0] * 3)
    for s, t in zip(pe.runs, (10.0, 900.0, 20.0), strict=True):
        s["_seconds"]["pretrain"] = t
    row = R.defense({"poisonedencoder": pe, "defense_x": _arm("defense_x", [0] * 30)}, "x")
    assert "; ;" not in row.measurement and "pre-training" in row.measurement
    lows = [float(x) for x in re.findall(r"\[(-?[\d.]+), [\d.]+\] s", row.measurement)]
    assert lows and min(lows) >= 0
    assert pe.seconds("pretrain")["ci95"][0] == 0.0


def test_the_rate_curve_figure_is_drawn_from_the_rows_points_and_only_then(tmp_path):
    from poisonedencoder.studies.claims.figures import rate_curve

    res = {f"r{i}": _arm(f"r{i}", [1] * k + [0] * (30 - k)) for i, k in enumerate((3, 10, 20, 27, 29))}
    row = R.rate_curve(res, [(r, f"r{i}") for i, r in enumerate((0.005, 0.01, 0.02, 0.03, 0.05))])
    assert rate_curve(row, tmp_path / "curve.png", 10)
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = R.rate_curve({}, [(0.01, "r0")])
    assert not rate_curve(empty, tmp_path / "none.png") and not (tmp_path / "none.png").exists()
