"""End to end on real data: digits (embedded) and a subset of the shared CIFAR-10 folder."""
import json
from pathlib import Path

import pytest

from poisonedencoder import config as C
from poisonedencoder.cli import main
from poisonedencoder.experiment.pipeline import Experiment

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
    exp = Experiment(cfg, tmp_path / "run", log=lambda _: None)
    manifest = exp.craft()
    assert manifest["num_poisoning_inputs"] == 3 * round(0.03 * 512 / 3)
    for t in manifest["targets"]:
        assert t["target_class"] != t["true_class"] and len(t["reference_indices"]) == 5
    m = exp.evaluate()
    assert m["tasks"][0]["num_classes"] == 10 and len(m["tasks"][0]["targets"]) == 3
    assert 0.1 < m["CA"] <= 1  # above chance (10 classes) after one epoch


def test_two_target_downstream_tasks_in_one_run(tmp_path, write_idx):
    """Pre-train on digits; attack digits and a second dataset (Fashion-MNIST-format IDX files) together."""
    import numpy as np


    root = tmp_path / "fm"
    root.mkdir()
    rng = np.random.default_rng(1)
    for stem, n in (("train", 60), ("t10k", 20)):
        write_idx(root / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{stem}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    cfg = C.resolve({"preset": "demo", "data_root": str(root), "cache_dir": str(tmp_path / "cache"),
                     "tasks": [{"dataset": "digits", "num_targets": 2}, {"dataset": "fashion-mnist", "num_targets": 2}]},
                    ["pretrain.epochs=1", "downstream.epochs=2", "attack.num_references=3", "attack.poisoning_rate=0.05"])
    exp = Experiment(cfg, tmp_path / "run", log=lambda _: None)
    manifest = exp.craft()
    assert [t["task"] for t in manifest["targets"]] == [0, 0, 1, 1]
    assert manifest["num_poisoning_inputs"] == 4 * round(0.05 * 1347 / 4)
    m = exp.evaluate()
    assert [t["dataset"] for t in m["tasks"]] == ["digits", "fashion-mnist"]
    assert m["num_targets"] == 4 and all(len(t["targets"]) == 2 for t in m["tasks"])
    assert abs(m["CA"] - (m["tasks"][0]["CA"] + m["tasks"][1]["CA"]) / 2) < 1e-12
