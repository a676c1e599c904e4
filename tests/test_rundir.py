"""The run directory's layout in one object: names, stamp, finished runs, seeds, timings."""
from __future__ import annotations

import json

import pytest

from poisonedencoder.core.errors import UserError
from poisonedencoder.experiment.rundir import RunDir, encoder_seconds, write_encoder_seconds


def test_the_layout_names_the_files_a_run_writes(tmp_path):
    r = RunDir(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in (r.config, r.stamp, r.manifest, r.timing, r.poisoned_encoder,
                                                        r.metrics, r.report, r.log_file(), r.log_file(clean=True))] == [
        "config.yaml", ".fingerprint", "poisons/manifest.json", "poisons/timing.json", "encoders/poisoned",
        "metrics.json", "report.md", "run.log", "clean.log"]
    assert r.seed(3).path == tmp_path / "seed_3"


def test_the_stamp_tells_a_finished_run_and_one_of_another_configuration(tmp_path):
    r = RunDir(tmp_path)
    assert r.read_stamp() is None and not r.finished("abc") and not r.holds_other("abc")
    r.write_stamp("abc", "seed: 0\n")
    assert r.stamp.read_text() == "abc\n" and r.config.read_text() == "seed: 0\n" and r.read_stamp() == "abc"
    assert not r.holds_other("xyz")  # a stamp alone (nothing finished) is not a run
    r.metrics.write_text("{}")
    assert r.finished("abc") and not r.finished("xyz") and r.holds_other("xyz") and not r.holds_other("abc")
    with pytest.raises(UserError, match="holds a run with a different configuration; choose another --out"):
        r.check_own("xyz")


def test_finished_seeds_and_the_recorded_stage_times(tmp_path):
    r = RunDir(tmp_path)
    for s in (1, 0, 2):
        r.seed(s).path.mkdir()
    for s in (0, 2):
        r.seed(s).metrics.write_text(json.dumps({"seed": s}))
    assert r.finished_seed_dirs() == [tmp_path / "seed_0", tmp_path / "seed_2"]
    assert r.seed_metrics([2, 0]) == [{"seed": 2}, {"seed": 0}]
    one = r.seed(0)
    one.write_craft_seconds(3.0, 4)
    assert json.loads(one.timing.read_text()) == {"craft_seconds": 3.0, "craft_seconds_per_poison": 0.75}
    clean = tmp_path / "cache" / "clean"
    write_encoder_seconds(one.poisoned_encoder, 12.34, None)
    write_encoder_seconds(clean, 5.0, {"resumed_after_epoch": 2, "seconds_before": 1.0})
    assert encoder_seconds(clean) == 6.0 and "resumed after epoch 2" in (clean / "seconds.txt").read_text()
    one.metrics.write_text(json.dumps({"evaluate_seconds": 7.5, "encoders": {"clean": str(clean / "encoder.pt")}}))
    assert one.stage_seconds() == {"craft": 3.0, "clean_dir": clean, "pretrain_clean": 6.0,
                                   "pretrain_poisoned": 12.3, "pretrain_unfiltered": None, "evaluate": 7.5}
    assert RunDir(tmp_path / "none").stage_seconds()["pretrain_poisoned"] is None
