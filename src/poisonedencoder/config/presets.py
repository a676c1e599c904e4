"""The presets (``preset: paper | cpu | gpu | demo``): pre-training and downstream settings that a
user's file and ``--set`` then override."""
from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # After the authors' code: CIFAR ResNet18, 1000 epochs. For GPUs.
    "paper": {
        "pretrain": {"backbone": "resnet18", "epochs": 1000, "batch_size": 256, "lr": 1e-3,
                     "weight_decay": 1e-6, "temperature": 0.5, "image_size": 32},
        "downstream": {"classifier": "mlp", "epochs": 500},
    },
    # Designed for 2 CPU cores: the full CIFAR-10 attack in minutes (see docs/RESULTS.md).
    "cpu": {
        "pretrain_data": {"num_images": 5000},
        "pretrain": {"backbone": "cnn7", "width": 16, "epochs": 100, "batch_size": 256, "image_size": 32},
        "downstream": {"classifier": "mlp", "epochs": 100, "num_train": 10000},
    },
    # One GPU (H100/H200): CIFAR ResNet18, bf16, 5,000 clean pre-training inputs (the `cpu` preset's
    # data), 200 epochs at batch 512: about 5 minutes per seed on one H200, clean and poisoned
    # pre-training and evaluation (measured; docs/DESIGN.md, "The gpu preset").
    "gpu": {
        "device": "cuda",
        "pretrain_data": {"num_images": 5000},
        "pretrain": {"backbone": "resnet18", "epochs": 200, "batch_size": 512, "image_size": 32, "lr": 1e-3,
                     "precision": "bf16", "checkpoint_every": 25, "snapshot_every": 50,
                     # what the measured runs did: compiling each run's models in each process is
                     # not measured against the ~1 M images a run trains on (docs/BENCHMARKS.md)
                     "compile": False},
        "downstream": {"classifier": "mlp", "epochs": 100, "num_train": None},
    },
    # Digits, 2-5 minutes on 2 cores (README). A tiny pre-training set, so a high rate: 135 poisoning
    # inputs per target input (see docs/RESULTS.md for what the attack needs).
    "demo": {
        "pretrain_data": {"dataset": "digits", "num_images": None},
        "tasks": [{"dataset": "digits", "num_targets": 3}],
        "pretrain": {"backbone": "cnn7", "width": 16, "epochs": 150, "batch_size": 128, "image_size": 16,
                     "crop_scale": [0.4, 1.0], "flip_p": 0.0},
        "attack": {"poisoning_rate": 0.3, "num_references": 100},
        "downstream": {"classifier": "mlp", "epochs": 150},
    },
}

