"""defense.finetune.control: the clean encoder is fine-tuned on the same clean inputs, and CA and
the clean ASR are measured on it (so the extra data's gain is not credited to the defense)."""
import json

import torch

from poisonedencoder.cli import main
from poisonedencoder.core.torch_files import load_torch


def _tensors(obj, prefix=""):
    """Every floating-point tensor of a saved encoder, by its key path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj} if obj.is_floating_point() else {}
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _tensors(val, f"{prefix}.{key}").items()}
    return {}


def _state(path):
    return _tensors(load_torch(path))


def test_the_control_fine_tunes_the_clean_encoder_on_the_same_inputs(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pretrain_data: {dataset: digits, num_images: 600}\ntasks: [{dataset: digits, num_targets: 2}]\n"
                   "attack: {poisoning_rate: 0.05, num_references: 5}\n"
                   "pretrain: {width: 4, image_size: 16, epochs: 1, batch_size: 64, threads: 1}\ndownstream: {epochs: 2}\n"
                   "defense: {name: finetune, finetune: {num_clean: 200, epochs: 1}}\n")
    common = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["run", str(cfg), "--out", str(tmp_path / "plain"), *common]) == 0
    assert main(["run", str(cfg), "--out", str(tmp_path / "ctl"), *common, "--set", "defense.finetune.control=true"]) == 0
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    ctl = json.loads((tmp_path / "ctl" / "metrics.json").read_text())
    assert plain["encoders"]["clean"].startswith(str(tmp_path / "cache")) and plain["defense"]["control"] is False
    assert ctl["encoders"]["clean"] == str(tmp_path / "ctl" / "control" / "encoders" / "finetuned" / "encoder.pt") and ctl["defense"]["control"]
    # the control started from the cached clean encoder and moved: its weights differ from it
    cached, tuned = _state(plain["encoders"]["clean"]), _state(ctl["encoders"]["clean"])
    assert cached.keys() == tuned.keys() and any(not torch.equal(cached[k], tuned[k]) for k in cached)
    # the poisoned side is the same defense in both runs
    assert ctl["PA"] == plain["PA"] and ctl["ASR"] == plain["ASR"]
