"""The arms race (beyond the paper): its arms, the selection of them as a group, its rows and figure."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from poisonedencoder import config as C
from poisonedencoder.studies.claims import build_rows, markdown, race, text, write_table
from poisonedencoder.studies.claims.arm_configs import arm_config
from poisonedencoder.studies.claims.arms import (FPR_DEFENSES, FPR_VARIANTS, RACE, RACE_DEFENSES, RACE_ORDER, RACE_REUSED,
                                                 Arm, plan, race_arm, race_cells, select)
from poisonedencoder.studies.claims.results import ArmResult
from poisonedencoder.studies.compare import Outcome
from poisonedencoder.core.errors import UserError

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "digits_works.yaml"
CFG = {"pretrain": {"algorithm": "simclr", "backbone": "cnn7", "width": 16, "epochs": 500, "image_size": 16},
       "pretrain_data": {"dataset": "digits"}}


def _arm(name, flips, pa=(0.99, 0.99, 0.99), defense=None, seeds=(0, 1, 2), first=0):
    """An arm with 10 target inputs per seed (``first``: the first target's index), ``flips[i]`` of target i;
    ``defense``: each run's defense.json (as its metrics hold it)."""
    out = {(s, 0, first + 10 * s + j, 1): Outcome(bool(flips[10 * s + j]), 1.0 if flips[10 * s + j] else -1.0, False)
           for s in seeds for j in range(10)}
    runs = [{"_seed": s, "CA": 0.995, "PA": pa[s], "num_targets": 10, "num_poisoning_inputs": 400,
             "num_clean_inputs": 1347, "poisoning_rate": 400 / 1347,
             "_seconds": {"pretrain": 300.0 + s, "craft": 2.0}, "defense": defense or {}} for s in seeds]
    return ArmResult(Arm(name, name), out, runs, 3, CFG)


@pytest.fixture(scope="module")
def arms():
    return plan(C.resolve(C.load_yaml(RECIPE), []), num_train=1347)


FPR_ARMS = ["race_paper_crop_disagreement_fpr", "race_varied_crop_disagreement_fpr",
            "race_paper_crop_disagreement_fpr_unfiltered", "race_varied_crop_disagreement_fpr_unfiltered"]


def test_every_cell_has_one_arm_the_paper_arms_reused_and_the_race_runs_last(arms):
    names = [a.name for a in arms]
    cells = [race_arm(v, d) for v, d in race_cells()]
    assert len(cells) == 24 and len(set(cells)) == 24 and len(set(names)) == len(names)
    assert all(c in names for c in cells)
    assert {race_arm(*k) for k in RACE_REUSED} == {"poisonedencoder", "defense_part_hash", "defense_large_crops"}
    new = [a for a in arms if a.name.startswith("race_")]
    assert len(new) == 21 and names[-21:] == [a.name for a in new]  # after every arm of the paper's rows
    assert names.index("witches_brew_paper") == len(names) - 22
    assert sorted(RACE_ORDER) == sorted(k for k in race_cells() if k not in RACE_REUSED)
    assert names[-6:-4] == ["race_paper_aspect_ratio", "race_varied_aspect_ratio"]  # removed entirely: last of the oracle's
    assert names[-4:] == FPR_ARMS  # the columns without the oracle: after every arm before them
    by = {a.name: a for a in arms}
    assert by["race_square_varied_crop_disagreement"].overrides == (
        "attack.poisonedencoder.shape=square", "attack.poisonedencoder.target_variation=0.5",
        "defense.name=crop_disagreement", "defense.crop_disagreement.budget=0.229")  # 400 of 1,747 inputs
    assert by["race_varied_large_crops"].overrides[-1] == "defense.large_crops.min_scale=0.7"
    assert by["race_varied_large_crops"].overrides[1:] == by["defense_large_crops"].overrides
    assert all(RACE in by[c].groups for c in cells) and not any(RACE in a.groups for a in arms if a.name not in cells)


def test_the_cells_without_the_oracle_set_fpr_and_the_encoder_and_leave_every_other_arm_as_it_was(arms):
    """Only the attackers that still poison without a defense face the columns without the oracle;
    the arms measured before them keep their names, order and overrides (so their recorded runs'
    fingerprints: each recorded run's configuration, from the plan, is the one it stamped)."""
    from poisonedencoder.ssl import precision as P

    assert FPR_DEFENSES == ("crop_disagreement_fpr", "crop_disagreement_fpr_unfiltered") == RACE_DEFENSES[-2:]
    assert FPR_VARIANTS == ("paper", "varied")
    assert [k for k in race_cells() if k[1] in FPR_DEFENSES] == [(v, d) for v in FPR_VARIANTS for d in FPR_DEFENSES]
    by = {a.name: a for a in arms}
    assert by["race_paper_crop_disagreement_fpr"].overrides == (
        "defense.name=crop_disagreement", "defense.crop_disagreement.fpr=0.05")
    assert by["race_varied_crop_disagreement_fpr_unfiltered"].overrides == (
        "attack.poisonedencoder.target_variation=0.5", "defense.name=crop_disagreement",
        "defense.crop_disagreement.fpr=0.05", "defense.crop_disagreement.encoder=unfiltered")
    assert all(RACE in by[a].groups and "fpr 0.05" in by[a].label for a in FPR_ARMS)
    before = [a for a in arms if a.name not in FPR_ARMS]
    assert [a.name for a in arms[:len(before)]] == [a.name for a in before]
    assert not any("fpr" in o for a in before for o in a.overrides)
    records = RECIPE.parents[1] / "docs" / "results" / "claims" / "arms"
    user = C.load_yaml(RECIPE)
    checked = 0
    with pytest.MonkeyPatch.context() as m:
        m.setattr(P, "native_bf16", lambda _device: True)  # the records: precision auto on native bf16
        for a in before:
            stamp = records / a.name / "seed_0" / ".fingerprint"
            if a.name.startswith("race_") and stamp.is_file():
                cfg = {**arm_config(user, [], a), "seed": 0, "seeds": None}
                assert C.experiment_fingerprint(cfg) == stamp.read_text().strip(), a.name
                checked += 1
    assert checked == 17


def test_only_race_selects_the_group_and_names_still_work(arms):
    picked = select(arms, ["race"])
    assert len(picked) == 24 and picked[:3] == ["poisonedencoder", "defense_part_hash", "defense_large_crops"]
    assert select(arms, ["icp", "race_square"]) == ["icp", "race_square"]
    assert select(arms, ["race", "icp"]) == ["poisonedencoder", "icp", *picked[1:]]  # the plan's order
    with pytest.raises(UserError, match="unknown claims arm.s. nope; .* or the group.s. race"):
        select(arms, ["nope", "race"])


def _tiny(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"preset": "demo", "seeds": [0], "tasks": [{"dataset": "digits", "num_targets": 2}],
                                      "attack": {"poisoning_rate": 0.06, "num_references": 30},
                                      "pretrain": {"epochs": 1}, "downstream": {"epochs": 2}}))
    return recipe


def test_only_race_runs_exactly_the_race_arms(tmp_path, monkeypatch):
    """``claims --only race`` on a tiny recipe: the runs handed over are the race arms' (no training here)."""
    from poisonedencoder.studies import parallel
    from poisonedencoder.cli import main

    handed = []

    def fake(units, *_args, **_kwargs):
        handed.extend(u for u in units if u.stage != parallel.CLEAN)
        return SimpleNamespace(failed=[], left=[])

    monkeypatch.setattr(parallel, "run_units", fake)
    out = tmp_path / "c"
    assert main(["claims", str(_tiny(tmp_path)), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--only", "race"]) == 0
    assert sorted(u.out.parent.name for u in handed) == sorted(race_arm(v, d) for v, d in race_cells())
    table = json.loads((out / "claims.json").read_text())
    assert [r["key"] for r in table if r.get("section") == RACE][:2] == ["race_paper_none", "race_paper_aspect_ratio"]
    assert not (out / "arms_race.png").exists()  # nothing finished: no figure


def _res(**arms):
    return {"poisonedencoder": _arm("poisonedencoder", [1] * 27 + [0] * 3), **arms}


def test_a_filter_that_removes_every_poisoning_input_has_recall_one_and_holds():
    removed = {"name": "aspect_ratio", "removed": 400, "flagged": 400, "precision": 1.0, "recall": 1.0, "seconds": 0.1}
    res = _res(race_paper_aspect_ratio=_arm("race_paper_aspect_ratio", [0] * 30, defense=removed))
    row = race.cell(res, "paper", "aspect_ratio")
    det = row.numbers["detection"]
    assert (det["recall"]["k"], det["recall"]["n"], det["recall"]["value"]) == (1200, 1200, 1.0)
    assert det["precision"]["value"] == 1.0 and row.verdict == race.HOLDS, row.why
    assert row.numbers["vs_paper_none"]["paired_n"] == 30 and row.numbers["vs_paper_none"]["dASR_hi"] < 0
    assert "recall 1200/1200 = 1.00" in row.measurement and "time per run 303 [" in row.measurement
    assert row.numbers["PA_change"]["mean"] == pytest.approx(0.0)


def test_evaded_variant_weaker_and_inconclusive_rest_on_the_interval():
    missed = {"name": "aspect_ratio", "removed": 0, "flagged": 0, "precision": 1.0, "recall": 0.0, "seconds": 0.1}
    res = _res(race_square=_arm("race_square", [1] * 26 + [0] * 4),
               race_square_aspect_ratio=_arm("race_square_aspect_ratio", [1] * 26 + [0] * 4, defense=missed))
    row = race.cell(res, "square", "aspect_ratio")
    assert row.verdict == race.EVADED, row.why
    assert row.numbers["detection"]["precision"]["n"] == 0 and row.numbers["detection"]["recall"]["value"] == 0.0
    assert race.cell(res, "square", "none").verdict == race.KEEPS
    # the variant itself is weak and the filter catches nothing: the variant's cost, not the defense's
    res = _res(race_square=_arm("race_square", [0] * 30),
               race_square_aspect_ratio=_arm("race_square_aspect_ratio", [0] * 30, defense=missed))
    assert race.cell(res, "square", "aspect_ratio").verdict == race.WEAKER
    assert race.cell(res, "square", "none").verdict == race.WEAKER
    # 0.90 against 0.73 (8 targets lost, 3 gained): the interval includes 0 and reaches below -0.2
    res = _res(race_varied=_arm("race_varied", [0] * 8 + [1] * 22))
    row = race.cell(res, "varied", "none")
    assert row.verdict == race.NO_DIFF and row.numbers["vs_paper_none"]["dASR_lo"] < -0.2 < 0 < row.numbers["vs_paper_none"]["dASR_hi"]


def test_the_pairing_uses_only_the_targets_both_arms_attacked():
    other = _arm("race_square", [1] * 30, first=1000)  # other targets entirely: nothing to pair
    row = race.cell(_res(race_square=other), "square", "none")
    assert row.numbers["vs_paper_none"]["paired_n"] is None and row.verdict == race.NOT_MEASURABLE
    two = _arm("race_square", [1] * 20, seeds=(0, 1))  # two seeds of three: paired on their 20 targets
    two.planned_runs = 3
    row = race.cell(_res(race_square=two), "square", "none")
    assert row.numbers["vs_paper_none"]["paired_n"] == 20 and row.verdict == race.PENDING
    assert row.why.startswith("partial: race_square 2/3 runs")


def test_cells_show_what_they_wait_for_and_the_table_shows_the_race_after_the_paper():
    cfg = {"attack": {"poisoning_rate": 0.3}, "tasks": [{"num_targets": 10, "targets": None}]}
    rows = build_rows(cfg, _res(), {"poisonedencoder"})
    arms_race = [r for r in rows if r.section == RACE]
    assert len(arms_race) == 24 and rows[-24:] == arms_race
    assert arms_race[0].key == "race_paper_none" and arms_race[0].verdict == "measured"
    sq = next(r for r in arms_race if r.key == "race_square_part_hash")
    assert sq.verdict == race.PENDING and sq.why == "to run: race_square_part_hash, race_square"
    md = markdown(rows)
    assert md.index("## Beyond the paper: the adaptive attacker") > md.index("Witches' Brew is ineffective")
    assert "| paper | ASR 0.90 [0.74, 0.97] (27/30); measured | not measured yet |" in md
    head = "| attacker \\ defense | none | aspect_ratio | part_hash | crop_disagreement | large_crops | " \
           "crop_disagreement_fpr | crop_disagreement_fpr_unfiltered |"
    assert head in md
    assert f"| not measured yet | {race.NOT_RUN} | {race.NOT_RUN} |" in md  # square's row: not planned, said why
    assert "| not measured yet | not measured yet | not measured yet |" in md  # paper's: planned, to run
    assert "`poisonedencoder claims --only race_square_part_hash,poisonedencoder,race_square`" in md
    assert "== Beyond the paper: the adaptive attacker ==\n[measured] race_paper_none" in text(rows)


def test_a_cell_without_the_oracle_pairs_with_the_same_attacker_and_reads_its_filter():
    """A crop_disagreement_fpr cell: the filter's verdicts (however many it removed) are scored,
    paired with the same attacker without a defense (the verdict), and, shown beside, with the same
    filter at the oracle's budget and, for the unfiltered encoder, with the clean encoder's threshold;
    the grid shows it in its column."""
    found = {"name": "crop_disagreement", "removed": 150, "flagged": 150, "precision": 0.8, "recall": 0.3,
             "seconds": 4.0, "threshold_rule": "fpr", "fpr": 0.05, "threshold": 0.4}
    res = _res(race_varied=_arm("race_varied", [1] * 12 + [0] * 18),
               race_varied_crop_disagreement=_arm("race_varied_crop_disagreement", [1] + [0] * 29),
               race_varied_crop_disagreement_fpr=_arm("race_varied_crop_disagreement_fpr", [1] * 3 + [0] * 27),
               race_varied_crop_disagreement_fpr_unfiltered=_arm("race_varied_crop_disagreement_fpr_unfiltered",
                                                                 [1] * 11 + [0] * 19, defense=found))
    row = race.cell(res, "varied", "crop_disagreement_fpr_unfiltered")
    assert row.arms == ("race_varied_crop_disagreement_fpr_unfiltered", "poisonedencoder", "race_varied",
                        "race_varied_crop_disagreement", "race_varied_crop_disagreement_fpr")
    assert "without the oracle or clean data" in row.claim and "fpr 0.05" in row.claim
    assert row.numbers["vs_crop_disagreement"]["dASR"] == pytest.approx(10 / 30)
    assert row.numbers["vs_crop_disagreement_fpr"]["dASR"] == pytest.approx(8 / 30)
    assert "- the same filter at the oracle's budget (1/30 = 0.03 [0.01, 0.17]): +0.33 [" in row.measurement
    assert "- the same threshold with the clean encoder (3/30 = 0.10 [" in row.measurement
    clean = race.cell(res, "varied", "crop_disagreement_fpr")
    assert "vs_crop_disagreement" in clean.numbers and "vs_crop_disagreement_fpr" not in clean.numbers
    assert "time per run 303 [" in row.measurement and "unfiltered" not in row.measurement.split("time per run")[1]
    for r in res["race_varied_crop_disagreement_fpr_unfiltered"].runs:  # the encoder it scored with: one more pre-training
        r["_seconds"]["unfiltered"] = 400.0
    row = race.cell(res, "varied", "crop_disagreement_fpr_unfiltered")
    assert "time per run 703 [" in row.measurement and "the unfiltered encoder's pre-training included" in row.measurement
    det = row.numbers["detection"]
    assert (det["recall"]["k"], det["recall"]["n"], det["flagged"]) == (360, 1200, 150)
    assert "150 inputs removed per run" in row.measurement
    assert row.numbers["vs_same_none"]["paired_n"] == 30 and row.verdict == race.WEAKER, row.why
    rows = race.rows(res)
    assert [(r.numbers["variant"], r.numbers["defense"]) for r in rows] == race_cells()
    line = next(x for x in race.grid(rows).splitlines() if x.startswith("| varied |"))
    assert line.endswith("| ASR 0.10 [0.03, 0.26] (3/30); defense holds | ASR 0.37 [0.22, 0.54] (11/30); recall 0.30; variant weaker |")


def test_the_record_keeps_the_unfiltered_encoders_time():
    from poisonedencoder.studies.claims import RECORD

    assert RECORD["encoders/unfiltered/seconds.txt"] == "encoders/unfiltered/seconds.txt"


def test_the_figure_is_written_once_a_cell_is_measured(tmp_path, monkeypatch):
    import poisonedencoder.studies.claims as claims

    assert not race.figure(race.rows({}), tmp_path / "none.png") and not (tmp_path / "none.png").exists()
    hit = {"name": "part_hash", "removed": 380, "flagged": 380, "precision": 1.0, "recall": 0.95, "seconds": 1.0}
    res = _res(defense_part_hash=_arm("defense_part_hash", [0] * 30, defense=hit))
    monkeypatch.setattr(claims, "read_results", lambda *_: res)
    cfg = {"attack": {"poisoning_rate": 0.3}, "tasks": [{"num_targets": 10, "targets": None}]}
    write_table(cfg, tmp_path, [])
    png = (tmp_path / "arms_race.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    row = next(r for r in json.loads((tmp_path / "claims.json").read_text()) if r["key"] == "race_paper_part_hash")
    assert row["section"] == RACE and row["numbers"]["detection"]["recall"]["k"] == 1140


@pytest.mark.slow
def test_a_race_cell_end_to_end_reads_the_filters_verdicts_back(tmp_path):
    """One seed, 2 targets, 1 epoch (about 20 s): the crop_disagreement cell against the shape-matched,
    varied-target attacker, with the two arms it is paired with."""
    from poisonedencoder.cli import main

    out = tmp_path / "c"
    assert main(["claims", str(_tiny(tmp_path)), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--only",
                 "poisonedencoder,race_square_varied,race_square_varied_crop_disagreement"]) == 0
    run = out / "arms" / "race_square_varied_crop_disagreement" / "seed_0"
    report = json.loads((run / "defense.json").read_text())
    assert report["removed"] == 80  # the budget: 80 poisoning inputs of 1,427 inputs
    rows = {r["key"]: r for r in json.loads((out / "claims.json").read_text())}
    det = rows["race_square_varied_crop_disagreement"]["numbers"]["detection"]
    assert det["recall"]["n"] == 80 and det["recall"]["k"] == round(report["recall"] * 80) == det["precision"]["k"]
    assert rows["race_square_varied_crop_disagreement"]["numbers"]["vs_same_none"]["paired_n"] == 2
    assert (out / "arms_race.png").is_file()
