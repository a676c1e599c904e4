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
    rows = run_sweep(user, over, "attack.poisoning_rate", parse_values("0.02,0.05"), tmp_path / "sw", log=lambda s: None)
    assert [r["attack.poisoning_rate"] for r in rows] == [0.02, 0.05]
    assert rows[0]["poisoning_rate"] < rows[1]["poisoning_rate"]
    with open(tmp_path / "sw" / "sweep.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (tmp_path / "sw" / "sweep.png").stat().st_size > 0
    table = (tmp_path / "sw" / "sweep.md").read_text().splitlines()
    assert table[0].startswith("| attack.poisoning_rate | CA | PA | ASR") and len(table) == 4
    assert table[2].startswith(f"| 0.02 | {rows[0]['CA']:.3f} | {rows[0]['PA']:.3f} | {rows[0]['ASR']:.2f}")
    assert len(list((tmp_path / "cache" / "encoders").iterdir())) == 1  # the clean encoder is trained once
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
