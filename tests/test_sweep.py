"""A sweep over an attack parameter: one run per value, one shared clean encoder, CSV + PNG;
snapshots give ASR over pre-training; scripts/asr_curve.py plots finished runs."""
import csv
import subprocess
import sys
from pathlib import Path

from poisonedencoder.studies.sweep import parse_values, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def test_sweep_shares_the_clean_encoder_and_writes_csv_table_png_and_snapshots(tmp_path):
    user = {"preset": "demo", "cache_dir": str(tmp_path / "cache")}
    over = ["pretrain.epochs=2", "pretrain.snapshot_every=1", "downstream.epochs=2", "attack.num_references=5"]
    rows = run_sweep(user, over, "attack.poisoning_rate", parse_values("0.02,0.05"), tmp_path / "sw", log=lambda _: None)
    assert [r["attack.poisoning_rate"] for r in rows] == [0.02, 0.05]
    assert rows[0]["poisoning_rate"] < rows[1]["poisoning_rate"]
    with open(tmp_path / "sw" / "sweep.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (tmp_path / "sw" / "sweep.png").stat().st_size > 0
    table = (tmp_path / "sw" / "sweep.md").read_text().splitlines()
    assert table[0].startswith("| attack.poisoning_rate | CA [95% CI] | PA [95% CI] | ASR [95% CI] (k/n)")
    assert len(table) == 6 and table[4] == "" and "McNemar" in table[5]  # two rows, then how to read them
    r = rows[0]
    assert table[2].startswith(f"| 0.02 | {r['CA']:.3f} [{r['CA_lo']:.3f}, {r['CA_hi']:.3f}] | {r['PA']:.3f} [")
    assert f"| {r['ASR']:.2f} [{r['ASR_lo']:.2f}, {r['ASR_hi']:.2f}] ({r['ASR_k']}/3) |" in table[2]
    assert r["ASR_n"] == 3 and r["CA_k"] / r["CA_n"] == r["CA"]
    assert "| (reference) | (reference) |" in table[2] and rows[1]["reference"] == 0.02
    # both values attack the same 3 target inputs (same seed): paired against the first value
    assert rows[1]["paired_n"] == 3 and rows[1]["dASR_p"] is not None and rows[1]["dmargin"] is not None
    assert abs(rows[1]["dASR"] - (rows[1]["ASR"] - rows[0]["ASR"])) < 1e-12
    assert abs(rows[1]["dmargin"] - (rows[1]["margin_poisoned"] - rows[0]["margin_poisoned"])) < 1e-9
    assert len(list((tmp_path / "cache" / "encoders").glob("*/encoder.pt"))) == 1  # the clean encoder is trained once
    import json

    m = json.loads((tmp_path / "sw" / "attack.poisoning_rate=0.02" / "metrics.json").read_text())
    assert [e["epoch"] for e in m["tasks"][0]["over_training"]] == [1, 2]
    assert m["tasks"][0]["over_training"][-1]["ASR"] == m["tasks"][0]["ASR"]
    assert all(e["intervals"]["ASR"]["n"] == 3 and e["intervals"]["PA"]["ci95"] for e in m["tasks"][0]["over_training"])
    png = tmp_path / "curve.png"
    runs = ",".join(str(tmp_path / "sw" / f"attack.poisoning_rate={v}") for v in ("0.02", "0.05"))
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "asr_curve.py"), "--out", str(png), f"random={runs}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "asr_curve.py"), "--out", str(png),
                        f"x={tmp_path / 'missing'}"], capture_output=True, text=True)
    assert r.returncode != 0 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_categorical_sweep_writes_bars_tradeoff_and_defense_columns(tmp_path):
    """A sweep over a categorical key (e.g. defense.name) gets bars, an ASR/cosine-against-PA
    trade-off plot and a table with the defense's cost columns; only the values that ran show them."""
    from poisonedencoder.studies.sweep import _write

    base = {"CA": 0.58, "clean_ASR": 0.0, "poisoning_rate": 0.3, "poisoning_rate_per_target": 0.03, "num_targets": 10,
            "poisoning_share": 0.3 / 1.3, "cosine_clean": 0.05}
    rows = [dict(base, **{"defense.name": "none", "PA": 0.6, "ASR": 0.2, "cosine_poisoned": 0.29,
                          "defense_removed": None, "defense_precision": None, "defense_recall": None,
                          "defense_clean_data_used": None}),
            dict(base, **{"defense.name": "part_hash", "PA": 0.58, "ASR": 0.0, "cosine_poisoned": 0.05,
                          "defense_removed": 1500, "defense_precision": 1.0, "defense_recall": 0.5,
                          "defense_clean_data_used": 0})]
    _write(rows, "defense.name", tmp_path)
    for name in ("sweep.png", "sweep_tradeoff.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "sweep.md").read_text().splitlines()
    assert table[0].endswith("| removed | precision | recall | clean data used | poisoning inputs / clean set | per target input | share of the pre-training set |")
    assert table[2].endswith("| - | - | - | - | 0.3000 | 0.0300 | 0.2308 |")  # the threat model on every row
    assert table[3].startswith("| part_hash | 0.580 | 0.580 | 0.00 |")
    assert table[3].endswith("| 1500 | 1.000 | 0.500 | 0 | 0.3000 | 0.0300 | 0.2308 |")


def test_sweep_over_seeds_pairs_values_on_the_same_targets_and_marks_significance():
    """Each value of a categorical sweep runs over all seeds; the rows pool them, carry counts and
    intervals, and compare each value with `none` on the same seeds and target inputs."""
    from poisonedencoder.studies.sweep import markdown_table, reference_index, summarize

    def metrics(seed_flips, margins):  # one task, 4 target inputs per seed
        targets = [{"seed": s, "test_index": i, "target_class": 1, "poisoned_prediction": int(f), "clean_prediction": 0,
                    "poisoned_margin": mg, "clean_margin": -2.0, "clean_cosine": 0.0, "poisoned_cosine": 0.1}
                   for (s, fl), ms in zip(seed_flips, margins, strict=True) for i, (f, mg) in enumerate(zip(fl, ms, strict=True))]
        k = sum(t["poisoned_prediction"] == 1 for t in targets)
        from poisonedencoder.experiment.metrics import margin_summary
        from poisonedencoder.core.stats import rate
        return {"CA": 0.9, "PA": 0.9, "ASR": k / len(targets), "clean_ASR": 0.0, "poisoning_rate": 0.1,
                "num_targets": len(targets), "seeds": [0, 1],
                "intervals": {"CA": rate(90, 100), "PA": rate(90, 100), "ASR": rate(k, len(targets)),
                              "clean_ASR": rate(0, len(targets))},
                "margins": margin_summary(targets), "over_seeds": None,
                "tasks": [{"targets": targets, "mean_cosine_clean": 0.0, "mean_cosine_poisoned": 0.1}]}

    cfg = {"seed": 0}
    none = metrics([(0, [1, 1, 1, 1]), (1, [1, 1, 1, 1])], [[1, 2, 1, 0.1], [2, 1, 2, 1]])
    weak = metrics([(0, [1, 1, 1, 0]), (1, [1, 1, 1, 1])], [[0.9, 1.9, 0.8, -0.1], [1.8, 0.9, 1.9, 0.8]])
    strong = metrics([(0, [0, 0, 0, 0]), (1, [0, 0, 0, 0])], [[-1, -2, -1, -2], [-2, -1, -2, -1]])
    values = ["part_hash", "none", "large_crops"]
    assert reference_index(values) == 1
    rows = summarize([("part_hash", cfg, strong), ("none", cfg, none), ("large_crops", cfg, weak)],
                     "defense.name", reference_index(values))
    assert [r["reference"] for r in rows] == ["none"] * 3 and rows[1]["dASR"] is None
    assert rows[0]["dASR"] == -1.0 and abs(rows[0]["dASR_p"] - 2 / 2 ** 8) < 1e-12  # 8 discordant pairs, all one way
    assert rows[2]["dASR"] == -1 / 8 and rows[2]["dASR_p"] == 1.0
    assert rows[2]["dmargin"] < 0 and rows[2]["dmargin_p"] < 0.05  # every margin fell by 0.1-0.2: paired t sees it
    table = markdown_table(rows, "defense.name").splitlines()
    assert table[2].split(" | ")[6].endswith("*") and table[2].split(" | ")[7].endswith("*")  # Δ ASR, Δ margin
    assert "(reference)" in table[3]
    assert not table[4].split(" | ")[6].endswith("*") and table[4].split(" | ")[7].endswith("*")
