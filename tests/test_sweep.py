"""A sweep over an attack parameter: one run per value, one shared clean encoder, CSV + PNG;
snapshots give ASR over pre-training; scripts/asr_curve.py plots finished runs."""
import csv
import subprocess
import sys
from pathlib import Path

from poisonedencoder.sweep import parse_values, run_sweep

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
    assert table[0].startswith("| attack.poisoning_rate | CA | PA | ASR") and len(table) == 4
    assert table[2].startswith(f"| 0.02 | {rows[0]['CA']:.3f} | {rows[0]['PA']:.3f} | {rows[0]['ASR']:.2f}")
    assert len(list((tmp_path / "cache" / "encoders").glob("*/encoder.pt"))) == 1  # the clean encoder is trained once
    import json

    m = json.loads((tmp_path / "sw" / "attack.poisoning_rate=0.02" / "metrics.json").read_text())
    assert [e["epoch"] for e in m["tasks"][0]["over_training"]] == [1, 2]
    assert m["tasks"][0]["over_training"][-1]["ASR"] == m["tasks"][0]["ASR"]
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
    from poisonedencoder.sweep import _write

    base = {"CA": 0.58, "clean_ASR": 0.0, "poisoning_rate": 0.3, "num_targets": 10, "cosine_clean": 0.05}
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
    assert table[0].endswith("| removed | precision | recall | clean data used |")
    assert table[2].endswith("| - | - | - | - |")
    assert table[3].startswith("| part_hash | 0.580 | 0.580 | 0.00 |") and table[3].endswith("| 1500 | 1.000 | 0.500 | 0 |")
