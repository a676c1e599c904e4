"""Independent runs at once (``poisonedencoder.studies.parallel``): the same results as one at a time, a
wall-time budget that stops and resumes, and a failed run reported with its reason."""
import json
from pathlib import Path

import pytest

from poisonedencoder import config as C
from poisonedencoder.cli import main
from poisonedencoder.studies.parallel import Unit, clean_units, run_units, with_clean_first
from test_seeds import _stable  # metrics without times and paths

ROOT = Path(__file__).resolve().parents[1]
# one thread in every run, also in the workers: the same arithmetic whatever the machine's cores
FAST = ["--set", "pretrain.epochs=1", "--set", "pretrain_data.num_images=300", "--set", "pretrain.width=8",
        "--set", "downstream.epochs=2", "--set", "attack.num_references=5", "--set", "pretrain.threads=1"]




@pytest.mark.slow
def test_parallel_seeds_give_the_same_metrics_as_one_at_a_time(tmp_path):
    runs = {}
    for name, extra in (("sequential", []), ("parallel", ["--parallel", "2"])):
        out = tmp_path / name
        assert main(["run", str(ROOT / "configs" / "digits_demo.yaml"), "--seeds", "0,1", "--out", str(out),
                     "--cache-dir", str(tmp_path / f"cache_{name}"), *FAST, *extra]) == 0
        runs[name] = json.loads((out / "metrics.json").read_text())
    assert _stable(runs["parallel"]) == _stable(runs["sequential"])
    assert (tmp_path / "parallel" / "seed_1" / "run.log").is_file()  # each worker's own log
    assert not (tmp_path / "sequential" / "seed_1" / "run.log").exists()


@pytest.mark.slow
def test_parallel_sweep_equals_the_sequential_sweep(tmp_path):
    tables = {}
    for name, extra in (("sequential", []), ("parallel", ["--parallel", "2"])):
        out = tmp_path / name
        assert main(["sweep", str(ROOT / "configs" / "digits_demo.yaml"), "--param", "attack.poisoning_rate",
                     "--values", "0.05,0.1", "--out", str(out), "--cache-dir", str(tmp_path / f"cache_{name}"),
                     *FAST, *extra]) == 0
        tables[name] = (out / "sweep.csv").read_text()
    assert tables["parallel"] == tables["sequential"]
    # the two values share each seed's clean encoder, trained once before the runs
    seeds = C.load_yaml(ROOT / "configs" / "digits_demo.yaml")["seeds"]
    assert len(list((tmp_path / "cache_parallel" / "encoders").glob("*/encoder.pt"))) == len(seeds)


def _units(tmp_path, n, **over):
    base = C.resolve(C.load_yaml(ROOT / "configs" / "digits_demo.yaml"), [
        "pretrain.epochs=3", "pretrain_data.num_images=300", "pretrain.width=8", "downstream.epochs=2",
        "attack.num_references=5", "pretrain.threads=1", f"cache_dir={json.dumps(str(tmp_path / 'cache'))}"])
    out = []
    for s in range(n):
        cfg = {**base, "seed": s, **over}
        out.append(Unit(cfg, tmp_path / f"seed_{s}"))
    return out


@pytest.mark.slow
def test_a_budget_stops_runs_and_the_same_list_resumes_them(tmp_path):
    units = _units(tmp_path, 2)
    res = run_units(units, jobs=2, budget_s=1.0, log=lambda _: None)  # a run takes several seconds
    assert not res.finished and sorted(res.left) == sorted(u.out for u in units)
    assert not any((u.out / "metrics.json").exists() for u in units)
    res = run_units(units, jobs=2, log=lambda _: None)
    assert sorted(res.finished) == sorted(u.out for u in units) and not res.left and not res.failed
    again = run_units(units, jobs=2, log=lambda _: None)  # finished runs are skipped
    assert sorted(again.finished) == sorted(u.out for u in units) and not again.seconds


@pytest.mark.slow
def test_no_run_starts_that_the_finished_ones_say_would_end_past_the_budget(tmp_path):
    units = _units(tmp_path, 3)
    res = run_units(units[:1], jobs=1, log=lambda _: None)
    took = res.seconds[str(units[0].out)]
    res = run_units(units[1:], jobs=1, budget_s=took * 1.5, log=lambda _: None)  # room for one more
    assert res.finished == [units[1].out] and res.left == [units[2].out]


@pytest.mark.slow
def test_a_failed_run_is_reported_with_its_reason(tmp_path):
    (bad,) = _units(tmp_path, 1, defense={**_units(tmp_path, 1)[0].cfg["defense"], "name": "finetune"})
    good = _units(tmp_path, 2)[1]
    res = run_units([bad, good], jobs=2, log=lambda _: None)
    assert res.finished == [good.out]
    ((d, why),) = res.failed
    assert d == bad.out and why.startswith("error: ") and "Traceback" not in why


def test_one_clean_unit_per_shared_clean_encoder(tmp_path):
    a, b = _units(tmp_path, 2)
    icp = Unit({**a.cfg, "attack": {**a.cfg["attack"], "name": "icp"}}, tmp_path / "icp")
    got = clean_units([a, icp, b])
    assert [u.out for u in got] == [a.out, b.out] and all(u.stage == "clean" for u in got)


def test_each_clean_encoder_comes_just_before_the_first_run_that_needs_it(tmp_path):
    a, b = _units(tmp_path, 2)
    icp = Unit({**a.cfg, "attack": {**a.cfg["attack"], "name": "icp"}}, tmp_path / "icp")
    got = with_clean_first([a, icp, b])
    assert [(u.out, u.stage) for u in got] == [(a.out, "clean"), (a.out, "run"), (icp.out, "run"),
                                                (b.out, "clean"), (b.out, "run")]


@pytest.mark.slow
def test_in_one_list_no_run_waits_for_another_runs_clean_encoder(tmp_path):
    a, b = _units(tmp_path, 2)
    icp = Unit({**a.cfg, "attack": {**a.cfg["attack"], "name": "icp"}}, tmp_path / "icp")
    res = run_units(with_clean_first([a, icp, b]), jobs=2, log=lambda _: None)
    assert sorted(res.finished) == sorted([a.out, a.out, icp.out, b.out, b.out]) and not res.failed
    assert len(list((tmp_path / "cache" / "encoders").glob("*/encoder.pt"))) == 2  # one per seed
    logs = [(u.out / "run.log").read_text() for u in (a, icp, b)]
    assert not any("another run is training this encoder" in t for t in logs)
    assert all("pretrain clean: reusing" in t for t in logs)  # every run found its encoder trained
