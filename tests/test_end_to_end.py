"""End to end on real data: digits (embedded) and a subset of the shared CIFAR-10 folder."""
import json
from pathlib import Path

import pytest

from poisonedencoder import config as C
from poisonedencoder.cli import main
from poisonedencoder.pipeline import Experiment

CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10"


@pytest.mark.slow
def test_demo_raises_asr_over_the_clean_encoder(tmp_path, capsys):
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    m = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert {"CA", "PA", "ASR", "clean_ASR", "tasks"} <= set(m)
    assert m["ASR"] >= m["clean_ASR"] + 0.4, m  # the attack really moves the target inputs
    assert m["CA"] > 0.9 and m["CA"] - m["PA"] < 0.05
    assert (tmp_path / "demo" / "poisons_grid.png").stat().st_size > 0
    assert "ASR" in (tmp_path / "demo" / "report.md").read_text()
    out = capsys.readouterr().out
    assert "clean ASR" in out and "digits" in out
    # a second call reuses every finished artifact
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0 and "reusing" in capsys.readouterr().out


@pytest.mark.skipif(not CIFAR.is_dir(), reason="shared CIFAR-10 folder is absent")
def test_cifar10_imagefolder_subset_runs_all_stages(tmp_path):
    cfg = C.resolve({"preset": "cpu", "pretrain_data": {"dataset": f"imagefolder:{CIFAR}", "num_images": 512},
                     "tasks": [{"dataset": f"imagefolder:{CIFAR}", "num_targets": 3}],
                     "cache_dir": str(tmp_path / "cache")},
                    ["pretrain.epochs=1", "pretrain.width=8", "pretrain.batch_size=128", "downstream.epochs=2",
                     "downstream.num_train=1000", "attack.num_references=5"])
    exp = Experiment(cfg, tmp_path / "run", log=lambda s: None)
    manifest = exp.craft()
    assert manifest["num_poisoning_inputs"] == 3 * round(0.03 * 512 / 3)
    for t in manifest["targets"]:
        assert t["target_class"] != t["true_class"] and len(t["reference_indices"]) == 5
    m = exp.evaluate()
    assert m["tasks"][0]["num_classes"] == 10 and len(m["tasks"][0]["targets"]) == 3
    assert 0.1 < m["CA"] <= 1 and 0 <= m["ASR"] <= 1
