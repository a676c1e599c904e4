"""Downstream classifiers on frozen encoder features (MLP feature-256-classes, or linear)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .ssl.augment import to_input


@torch.no_grad()
def extract_features(backbone: nn.Module, images: np.ndarray, size: int, batch_size: int = 1024,
                     device: str = "cpu") -> torch.Tensor:
    """Features of uint8 images ``(N, H, W, 3)`` from the frozen backbone (eval mode, no augmentation),
    computed on ``device`` and returned there (a GPU keeps them for the classifier)."""
    backbone = backbone.to(device).eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = to_input(images[i:i + batch_size], size).to(device).contiguous(memory_format=torch.channels_last)
        out.append(backbone(x).float())
    return torch.cat(out) if out else torch.zeros(0, device=device)


class Classifier(nn.Module):
    """Standardizes features with the training set's statistics, then an MLP or a linear layer."""

    def __init__(self, dim: int, num_classes: int, kind: str = "mlp", hidden: int = 256):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        if kind == "mlp":
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
        else:
            self.net = nn.Linear(dim, num_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net((f - self.mean) / self.std)


def train_classifier(features: torch.Tensor, labels, num_classes: int, kind: str = "mlp", epochs: int = 100,
                     lr: float = 1e-3, batch_size: int = 256, seed: int = 0) -> Classifier:
    """Train on ``features`` where they lie (CPU or GPU); the batch order comes from a CPU
    generator seeded with ``seed``, so a GPU run draws the same batches as a CPU run."""
    dev = features.device
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).to(dev)
    clf = Classifier(features.shape[1], num_classes, kind).to(dev)
    clf.mean.copy_(features.mean(0))
    clf.std.copy_(features.std(0).clamp_min(1e-6))
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    n = len(y)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g).to(dev)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            loss = loss_fn(clf(features[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return clf.eval()


@torch.no_grad()
def predict(clf: Classifier, features: torch.Tensor) -> np.ndarray:
    return clf(features).argmax(1).cpu().numpy()


@torch.no_grad()
def logits(clf: Classifier, features: torch.Tensor) -> torch.Tensor:
    """The classifier's logits for ``features`` (float32, on the CPU whatever device ``clf`` is on)."""
    dev = next(clf.parameters()).device
    return clf(features.to(dev)).float().cpu()
