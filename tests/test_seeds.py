"""Seeds as an axis: one run per seed, a pooled result, reproducible, with its own out-dir checks."""
import json
from pathlib import Path

import pytest

from poisonedencoder import config as C
from poisonedencoder.cli import main
from poisonedencoder.core.errors import UserError
from poisonedencoder.config import experiment_fingerprint
from poisonedencoder.experiment.report import format_table
from poisonedencoder.studies.seeds import combine, load_seed_metrics

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "pretrain.epochs=1", "--set", "pretrain_data.num_images=300", "--set", "pretrain.width=8",
        "--set", "downstream.epochs=2", "--set", "attack.num_references=5"]


def _run(out, cache, seeds="0,1", extra=()):
    return main(["run", str(ROOT / "configs" / "digits_demo.yaml"), "--seeds", seeds, "--out", str(out),
                 "--cache-dir", str(cache), *FAST, *extra])


def _stable(m):
    """Metrics without what legitimately differs between two identical runs (time, paths)."""
    m = json.loads(json.dumps(m))
    for d in [m] + m.get("per_seed", []):
        d.pop("evaluate_seconds", None)
        d.pop("encoders", None)
    return m


def test_run_over_seeds_pools_per_seed_runs_and_reproduces(tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert _run(out, cache) == 0
    printed = capsys.readouterr().out
    for row in ("seed 0 ", "seed 1 ", "pooled ", "mean of 2 seeds"):
        assert row in printed
    m = json.loads((out / "metrics.json").read_text())
    per = load_seed_metrics(out, [0, 1])
    # each seed draws its own target inputs (and target classes), and its own clean encoder
    t0, t1 = ([(t["test_index"], t["target_class"]) for t in p["tasks"][0]["targets"]] for p in per)
    assert t0 != t1 and len(t0) == len(t1) == 3
    assert len([d for d in (cache / "encoders").iterdir() if d.is_dir()]) == 2
    for s in (0, 1):  # each seed's run records its own single-seed configuration
        assert {k: C.load_yaml(out / f"seed_{s}" / "config.yaml")[k] for k in ("seed", "seeds")} == {"seed": s, "seeds": None}
    # the combined result is exactly the per-seed results pooled
    assert json.loads(json.dumps(combine(per, [0, 1]))) == m
    assert m["seeds"] == [0, 1] and m["num_targets"] == 6
    for k in ("ASR", "clean_ASR", "CA", "PA"):
        assert m["intervals"][k]["k"] == sum(p["intervals"][k]["k"] for p in per)
        assert m["intervals"][k]["n"] == sum(p["intervals"][k]["n"] for p in per)
        assert m[k] == m["intervals"][k]["k"] / m["intervals"][k]["n"]
        assert m["over_seeds"][k]["mean"] == pytest.approx(sum(p[k] for p in per) / 2)
        assert [s[k] for s in m["per_seed"]] == [p[k] for p in per]
    assert [(t["seed"], t["test_index"]) for t in m["tasks"][0]["targets"]] == \
        [(0, i) for i, _ in t0] + [(1, i) for i, _ in t1]
    margins = [t["poisoned_margin"] for p in per for t in p["tasks"][0]["targets"]]
    assert m["margins"]["poisoned"]["margin"]["mean"] == pytest.approx(sum(margins) / 6)
    assert m["over_seeds"]["poisoned_margin"]["mean"] == pytest.approx(
        sum(p["margins"]["poisoned"]["margin"]["mean"] for p in per) / 2)
    report = (out / "report.md").read_text()
    assert format_table(m) in report and "seed_<s>/" in report
    for s in (0, 1):  # each seed's own report stays a single-run report
        assert (out / f"seed_{s}" / "report.md").read_text().startswith("# PoisonedEncoder run\n")
    # rerun from scratch (fresh cache and directory): the same numbers
    assert _run(tmp_path / "again", tmp_path / "cache2") == 0
    assert _stable(json.loads((tmp_path / "again" / "metrics.json").read_text())) == _stable(m)
    # rerun in place: every stage reused, the same numbers
    capsys.readouterr()
    assert _run(out, cache) == 0
    assert "reusing" in capsys.readouterr().out
    assert _stable(json.loads((out / "metrics.json").read_text())) == _stable(m)
    # another configuration into the same directory is refused, and so is a single-seed run's directory
    assert _run(out, cache, extra=["--set", "attack.poisoning_rate=0.2"]) == 2
    assert main(["run", str(ROOT / "configs" / "digits_demo.yaml"), "--seeds", "0", "--out", str(out / "seed_1"),
                 "--cache-dir", str(cache), *FAST]) == 2
    assert "single-seed run" in capsys.readouterr().err


def test_seeds_config_key_is_validated_and_leaves_fingerprints_alone():
    base = C.resolve({"preset": "demo"})
    assert base["seeds"] is None
    cfg = C.resolve({"preset": "demo", "seeds": [0, 1, 2]})
    assert cfg["seeds"] == [0, 1, 2]
    assert experiment_fingerprint(cfg) == experiment_fingerprint(base)  # recorded runs keep their caches
    assert C.resolve({"preset": "demo"}, ["seeds=[3,4]"])["seeds"] == [3, 4]
    for bad in ([], [0, 0], [1.5], ["a"], 3, [-1], [True]):
        with pytest.raises(UserError, match="seeds"):
            C.resolve({"preset": "demo", "seeds": bad})


def test_sweep_over_seeds_trains_one_clean_encoder_per_seed_and_pairs_values(tmp_path):
    from poisonedencoder.studies.sweep import parse_values, run_sweep

    over = [FAST[i + 1] for i in range(0, len(FAST), 2)] + ["seeds=[0,1]"]
    rows = run_sweep({"preset": "demo", "cache_dir": str(tmp_path / "cache")}, over, "attack.poisoning_rate",
                     parse_values("0.1,0.3"), tmp_path / "sw", log=lambda _: None)
    assert len([d for d in (tmp_path / "cache" / "encoders").iterdir() if d.is_dir()]) == 2  # per seed, not per value
    for v in ("0.1", "0.3"):
        assert (tmp_path / "sw" / f"attack.poisoning_rate={v}" / "seed_1" / "metrics.json").is_file()
    assert [r["ASR_n"] for r in rows] == [6, 6] and rows[0]["seeds"] == "0 1"
    assert rows[0]["ASR_seed_mean"] is not None and rows[1]["paired_n"] == 6 and rows[1]["dASR_p"] is not None
    table = (tmp_path / "sw" / "sweep.md").read_text()
    assert "ASR mean of seeds [t]" in table and "(reference)" in table
