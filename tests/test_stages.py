"""The stages outside pre-training, each on its own: the run-directory guard, downstream
classification, per-task evaluation and its summary (metrics.py), the report, and io's safe loading."""
from fractions import Fraction

import numpy as np
import pytest
import torch

from poisonedencoder import config as C
from poisonedencoder.attack.targets import Target
from poisonedencoder.downstream import classify
from poisonedencoder.core.errors import UserError
from poisonedencoder.experiment.evaluation import evaluate_task, train_subset
from poisonedencoder.core.torch_files import load_torch, save_torch
from poisonedencoder.experiment.metrics import summarize
from poisonedencoder.experiment.pipeline import Experiment
from poisonedencoder.experiment.report import format_table, write_report

D = {"classifier": "linear", "epochs": 30, "lr": 0.05, "batch_size": 16, "knn_k": 5, "knn_temperature": 0.1,
     "num_train": None}


def _color_encoder():
    """A fixed 'encoder': the mean color of the image (the toy classes are colors)."""
    class MeanColor(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3))
    return MeanColor()


def test_the_run_directory_guard_refuses_a_finished_run_of_another_configuration(tmp_path):
    cfg = C.resolve({"preset": "demo"}, [f"cache_dir={tmp_path / 'cache'}"])
    out = tmp_path / "run"
    Experiment(cfg, out, log=lambda _: None)
    assert (out / ".fingerprint").read_text().strip() == C.experiment_fingerprint(cfg)
    other = C.resolve({"preset": "demo"}, [f"cache_dir={tmp_path / 'cache'}", "attack.poisoning_rate=0.1"])
    Experiment(other, out, log=lambda _: None)  # nothing finished yet: the directory is taken over
    assert (out / ".fingerprint").read_text().strip() == C.experiment_fingerprint(other)
    (out / "encoders").mkdir()  # a stage finished
    with pytest.raises(UserError, match="different configuration"):
        Experiment(cfg, out, log=lambda _: None)
    Experiment(other, out, log=lambda _: None)  # the same configuration resumes
    # settings that do not change a result do not change the fingerprint
    assert C.experiment_fingerprint(dict(other, data_root="/elsewhere", seeds=[0, 1])) == C.experiment_fingerprint(other)


def test_a_finished_runs_config_is_what_it_ran_with(tmp_path):
    """Opening a finished run with a setting outside the fingerprint changed (as the claims table
    does with its own thread count) leaves its config.yaml as it ran; an unfinished run that is
    resumed records the settings it resumes with."""
    def cfg(threads):
        return C.resolve({"preset": "demo"}, [f"cache_dir={tmp_path / 'cache'}", f"pretrain.threads={threads}"])

    out = tmp_path / "run"
    Experiment(cfg(1), out, log=lambda _: None)
    Experiment(cfg(2), out, log=lambda _: None)  # resumed with two threads
    assert "threads: 2" in (out / "config.yaml").read_text()
    (out / "metrics.json").write_text("{}")  # finished
    Experiment(cfg(1), out, log=lambda _: None)
    assert "threads: 2" in (out / "config.yaml").read_text()


def test_classify_learns_a_separable_task_and_train_subset_is_seeded(toy_dataset):
    idx = train_subset(toy_dataset, None, 0, 0)
    assert (idx == np.arange(len(toy_dataset.train))).all()
    sub = train_subset(toy_dataset, 12, 0, 0)
    assert len(sub) == 12 and (np.diff(sub) > 0).all() and (sub == train_subset(toy_dataset, 12, 0, 0)).all()
    assert not (sub == train_subset(toy_dataset, 12, 1, 0)).all()
    pred, ftr, fte, lg = classify(_color_encoder(), toy_dataset, idx, 8, D, seed=0)
    assert ftr.shape == (40, 3) and fte.shape == (20, 3) and lg.shape == (20, 4)
    assert (pred == toy_dataset.test.labels).mean() == 1.0


def test_evaluate_summarize_and_report_agree(toy_dataset, tmp_path):
    """Two target inputs; the 'poisoned' encoder is the clean one, so ASR = clean ASR = 0 (the
    color classifier gets every input right), and the report prints the counts."""
    enc = _color_encoder()
    targets = [Target(0, "toy", i, int(toy_dataset.test.labels[i]), (int(toy_dataset.test.labels[i]) + 1) % 4)
               for i in (0, 5)]
    res = evaluate_task({"clean": enc, "poisoned": enc}, [(1, enc)], toy_dataset, 0, targets,
                        {"image_size": 8, "epochs": 2}, D, seed=0)
    assert res["num_test_inputs"] == 18 and res["CA"] == res["PA"] == 1.0 and res["ASR"] == res["clean_ASR"] == 0.0
    assert [t["test_index"] for t in res["targets"]] == [0, 5]
    assert all(t["poisoned_margin"] < 0 and t["poisoned_target_rank"] > 1 for t in res["targets"])
    assert [e["epoch"] for e in res["over_training"]] == [1, 2]
    m = {**summarize([res, res]), "num_poisoning_inputs": 7, "num_clean_inputs": 40, "poisoning_rate": 0.175,
         "tasks": [res, res]}
    assert m["num_targets"] == 4 and m["intervals"]["ASR"]["k"] == 0 and m["intervals"]["ASR"]["n"] == 4
    table = format_table(m)
    assert "(0/4)" in table and "overall" in table and "7 poisoning inputs" in table
    cfg = C.resolve({"preset": "demo"})
    text = write_report(tmp_path / "report.md", cfg, m).read_text()
    assert table in text and text.count("| toy | 0 |") == 2


def test_load_torch_refuses_what_weights_only_refuses(tmp_path):
    save_torch(tmp_path / "ok.pt", {"w": torch.ones(2), "loss": [1.0]})
    assert load_torch(tmp_path / "ok.pt")["loss"] == [1.0]
    torch.save({"obj": Fraction(1, 3)}, tmp_path / "code.pt")  # an arbitrary object: not a checkpoint
    with pytest.raises(UserError, match="cannot load checkpoint"):
        load_torch(tmp_path / "code.pt")
