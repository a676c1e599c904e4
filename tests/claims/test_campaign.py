"""The claims campaign: its fixed queue, the resume from a record folder, the budget guard, and
the merge of what a call finished into the record (the table and a document's section rewritten)."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from poisonedencoder import config as C
from poisonedencoder.cli import main
from poisonedencoder.studies.claims.arms import plan
from poisonedencoder.studies.claims.campaign import queue

ROOT = Path(__file__).resolve().parents[2]
QUEUE = ["poisonedencoder", "one_per_run", "rate_0.005", "rate_0.01", "rate_0.02", "method_mocov2", "method_byol",
         "method_simsiam", "defense_part_hash", "defense_drop_disagreeing", "defense_overlapping_views"]
RACE = ["race_paper_crop_disagreement", "race_square_crop_disagreement", "race_varied_crop_disagreement",
        "race_square_varied_crop_disagreement"]


def _recipe(tmp_path):
    cfg = {"preset": "demo", "seeds": [0], "tasks": [{"dataset": "digits", "num_targets": 2}],
           "attack": {"poisoning_rate": 0.06, "num_references": 30}, "pretrain": {"epochs": 1}, "downstream": {"epochs": 2}}
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_the_queue_on_the_gpu_recipe_and_on_digits(tmp_path):
    cfg = C.resolve(C.load_yaml(ROOT / "configs" / "cifar10_gpu_campaign.yaml"))
    assert queue(cfg, plan(cfg, reading=True)) == [*QUEUE, "defense_large_crops_0.7", "finetune_none", "defense_finetune",
                                                   "witches_brew", *RACE, "icp", "defense_large_crops", "rate_0.05"]
    assert cfg["seeds"] == [0, 1, 2] and cfg["attack"]["poisoning_rate"] == 0.3  # 30 targets at 3% each
    digits = C.resolve(C.load_yaml(_recipe(tmp_path)))  # its large_crops arm crops at 0.7 already: no second one
    arms = plan(digits)
    assert "defense_large_crops_0.7" not in {a.name for a in arms}
    assert queue(digits, arms) == [*QUEUE, "defense_large_crops", "finetune_none", "defense_finetune", "witches_brew",
                                   *RACE, "icp", "rate_0.05"]


def test_list_gives_each_arms_place_in_the_queue(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    assert main(["claims", str(recipe), "--out", str(tmp_path / "c"), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    places = {line.split()[0]: int(line.split("(campaign #")[1].split(")")[0]) for line in lines if "(campaign #" in line}
    cfg = C.resolve(C.load_yaml(recipe))
    assert sorted(places, key=places.get) == queue(cfg, plan(cfg)) and sorted(places.values()) == list(range(1, len(places) + 1))
    assert "duplication" not in places and "witches_brew_paper" not in places


@pytest.mark.parametrize("args,message", [
    (["--doc", "x.md"], "--doc goes with --merge"),
    (["--campaign", "rec", "--only", "icp"], "--campaign runs the queue's next arms: give no --only"),
    (["--merge", "nowhere"], "--merge nowhere is not a folder"),
    (["--merge", "rec", "--table"], "--table and --merge exclude each other"),
    (["--campaign", "nowhere", "--device", "cpu"], "--campaign nowhere is not a folder"),
])
def test_bad_campaign_options_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rec").mkdir()
    assert main(["claims", str(_recipe(tmp_path)), "--out", "c", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1, err


def _doc(tmp_path):
    doc = tmp_path / "DOC.md"
    doc.write_text("# before\n\n<!-- claims-campaign:begin -->\nold\n<!-- claims-campaign:end -->\n\nafter\n")
    return doc


def test_a_document_without_its_markers_is_refused_and_kept(tmp_path):
    from poisonedencoder.core.errors import UserError
    from poisonedencoder.studies.claims.merge import write_section

    doc = tmp_path / "DOC.md"
    doc.write_text("# mine\n<!-- claims-campaign:end -->\n<!-- claims-campaign:begin -->\n")
    with pytest.raises(UserError, match="needs one line"):
        write_section(doc, "new\n")
    assert doc.read_text() == "# mine\n<!-- claims-campaign:end -->\n<!-- claims-campaign:begin -->\n"
    ok = _doc(tmp_path)
    write_section(ok, "new\n")
    assert ok.read_text() == "# before\n\n<!-- claims-campaign:begin -->\nnew\n<!-- claims-campaign:end -->\n\nafter\n"


def _files(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_merge_checks_records_and_the_campaign_resumes_from_them(tmp_path, capsys):
    recipe, cache = str(_recipe(tmp_path)), str(tmp_path / "cache")
    runs, first = tmp_path / "runs", tmp_path / "first"
    assert main(["claims", recipe, "--out", str(runs), "--cache-dir", cache, "--only", "poisonedencoder"]) == 0
    assert main(["claims", recipe, "--out", str(runs), "--record", str(first)]) == 0
    record, doc = tmp_path / "record", _doc(tmp_path)
    record.mkdir()
    (record / ".poisonedencoder").write_text("")
    capsys.readouterr()
    # the merge: the new run in, the table and the document's section rewritten from the record
    assert main(["claims", recipe, "--out", str(record), "--merge", str(first), "--doc", str(doc)]) == 0
    assert "merged 1 new run(s)" in capsys.readouterr().out
    run = "arms/poisonedencoder/seed_0"
    assert _files(record / run) == _files(first / run)
    rows = {r["key"]: r for r in json.loads((record / "claims.json").read_text())}
    assert rows["high_asr"]["numbers"]["ASR"]["n"] == 2
    text = doc.read_text()
    assert text.startswith("# before\n\n<!-- claims-campaign:begin -->\nRecipe `") and text.endswith(
        "<!-- claims-campaign:end -->\n\nafter\n") and "\nold\n" not in text
    assert "6.0% of the clean set, 5.7% of the pre-training set (3.0% of the clean set per target input" in text
    assert "1 of 1 seeds, 2 targets" in text and "next: `one_per_run`" in text
    line = next(x for x in text.splitlines() if x.startswith("| (threat model)"))
    assert "**not measured yet**" in line and "--only one_per_run,poisonedencoder" in line
    # again: nothing new, nothing changed
    before = _files(record)
    assert main(["claims", recipe, "--out", str(record), "--merge", str(first)]) == 0
    assert "merged 0 new run(s)" in capsys.readouterr().out

    def refused(change, message):
        bad = tmp_path / "bad"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(first, bad)
        change(bad)
        assert main(["claims", recipe, "--out", str(record), "--merge", str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1, err
        assert _files(record) == before  # nothing merged

    def other_metrics(bad):
        m = bad / run / "metrics.json"
        m.write_text(json.dumps({**json.loads(m.read_text()), "ASR": 0.123}))

    def other_config(bad):
        c = bad / run / "config.yaml"
        c.write_text(c.read_text().replace("epochs: 1\n", "epochs: 2\n", 1))

    refused(other_metrics, "differs from the recorded")
    redone = tmp_path / "redone"  # a recorded run's craft redone elsewhere: its timing differs, the run is the same
    shutil.copytree(first, redone)
    (redone / run / "poisons" / "timing.json").write_text('{"craft_seconds": 123456.0}')
    assert main(["claims", recipe, "--out", str(record), "--merge", str(redone)]) == 0
    assert "merged 0 new run(s)" in capsys.readouterr().out and _files(record) == before
    refused(other_config, "do not belong together")
    refused(lambda bad: shutil.copytree(bad / run, bad / "arms/icp/seed_0"), "not a run of arm icp at seed 0")
    refused(lambda bad: shutil.move(bad / run, bad / "arms/poisonedencoder/seed_1"), "is not one of the recipe's seeds")
    refused(lambda bad: shutil.copytree(bad / run, bad / "arms/nope/seed_0"), "nope is no arm of this recipe")
    # the campaign: the record's runs copied in, never run again; the budget guard starts nothing
    # where the budget is below a recorded run's time
    out = tmp_path / "campaign"
    assert main(["claims", recipe, "--out", str(out), "--cache-dir", cache, "--campaign", str(record),
                 "--budget", "0.001"]) == 0
    said = capsys.readouterr().out
    assert "next: " + ", ".join(queue(C.resolve(C.load_yaml(recipe)), plan(C.resolve(C.load_yaml(recipe))))[1:]) in said
    assert "nothing started" in said
    assert [p.name for p in (out / "arms").iterdir()] == ["poisonedencoder"]
    assert _files(out / run) == _files(record / run)
    # with a budget above it, the next arms go in the queue's order and the recorded run is not run again
    from poisonedencoder.studies.claims.campaign import recorded, seconds_per_run

    user = C.load_yaml(recipe)
    per_run = seconds_per_run(recorded(user, [], record, plan(C.resolve(user))))
    assert main(["claims", recipe, "--out", str(out), "--cache-dir", cache, "--campaign", str(record),
                 "--budget", f"{per_run * 1.5:.3f}"]) == 0
    said = capsys.readouterr().out
    started = next(x for x in said.splitlines() if " arm(s) (" in x)
    assert started.split(" arm(s) (")[1].startswith("one_per_run, rate_0.005, rate_0.01, rate_0.02, method_mocov2")
    assert f"run -> {out / run}" not in said and f"run -> {out / 'arms' / 'one_per_run' / 'seed_0' / 'target_'}" in said
    for f in ("metrics.json", "config.yaml", ".fingerprint"):  # not run again (its craft is redone: one per run's references)
        assert (out / run / f).read_bytes() == (record / run / f).read_bytes()


def test_the_claims_page_shows_the_gpu_record():
    """docs/CLAIMS.md's campaign section is what the merge writes from docs/results/claims_gpu's records
    (and the record's claims.json their table): a record merged without the page shows here."""
    import re

    from poisonedencoder.studies.claims import build_rows, changed_rows, not_here, read_results
    from poisonedencoder.studies.claims.merge import section

    record = ROOT / "docs" / "results" / "claims_gpu"
    cfg = C.resolve(C.load_yaml(ROOT / "configs" / "cifar10_gpu_campaign.yaml"))
    arms = plan(cfg, reading=True)
    res = read_results(cfg, record, arms)
    rows = build_rows(cfg, res, not_here(cfg, arms))
    page = (ROOT / "docs" / "CLAIMS.md").read_text()
    shown = re.search(r"<!-- claims-campaign:begin -->\n(.*?)<!-- claims-campaign:end -->", page, re.S).group(1)
    assert shown == section(cfg, rows, res, "configs/cifar10_gpu_campaign.yaml", "results/claims_gpu/")
    assert changed_rows(record, rows) == [] and (record / "claims.json").is_file()


def test_the_merge_reads_the_train_splits_size_from_a_recorded_fine_tuning_run(tmp_path):
    """Where the dataset is not on the merging machine, the fine-tuning arms' sizes (which follow
    from the train split's) are those a recorded fine-tuning run gives: its pre-training inputs and
    the clean inputs it fine-tuned on."""
    from poisonedencoder.studies.claims.merge import recorded_train_size

    assert recorded_train_size(tmp_path) is None
    cfg = C.resolve(C.load_yaml(_recipe(tmp_path)), ["pretrain_data.num_images=27", "defense.name=finetune",
                                                      "defense.finetune.num_clean=9", "seed=0"])
    run = tmp_path / "arms" / "defense_finetune" / "seed_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(C.dump(cfg))
    assert recorded_train_size(tmp_path) == 36
    arms = {a.name: a for a in plan(C.resolve(C.load_yaml(_recipe(tmp_path)), ["pretrain_data.num_images=24"]), 36)}
    assert "pretrain_data.num_images=27" in arms["finetune_none"].overrides  # 36 - 24 leaves too few: 75% of 36
    assert "defense.finetune.num_clean=9" in arms["defense_finetune"].overrides
