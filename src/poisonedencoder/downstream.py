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


class KNNClassifier(nn.Module):
    """Weighted k-nearest-neighbour vote on cosine similarity, the usual SSL evaluation
    (InstDisc, solo-learn): the ``k`` training features most similar to a test feature vote for
    their labels with weight ``exp(similarity / temperature)``. Nothing is trained.

    ``forward`` returns the log of the normalized vote, so ``softmax`` of it is the vote share
    and argmax / margin / rank read like a trained classifier's logits.

    >>> knn = KNNClassifier(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), 2, k=1)
    >>> knn(torch.tensor([[0.9, 0.1]])).argmax(1).tolist()
    [0]
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int = 200,
                 temperature: float = 0.07, chunk: int = 1024):
        super().__init__()
        self.register_buffer("bank", nn.functional.normalize(features.float(), dim=1))
        self.register_buffer("labels", torch.as_tensor(labels, dtype=torch.long, device=features.device))
        self.num_classes, self.k, self.temperature, self.chunk = num_classes, min(k, len(labels)), temperature, chunk

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        out = []
        for x in nn.functional.normalize(f.float(), dim=1).split(self.chunk):
            sim, idx = (x @ self.bank.T).topk(self.k, dim=1)
            votes = torch.zeros(len(x), self.num_classes, device=x.device)
            # shifted by the row's top similarity: the same shares, no overflow at small temperatures
            votes.scatter_add_(1, self.labels[idx], ((sim - sim[:, :1]) / self.temperature).exp())
            out.append((votes / votes.sum(1, keepdim=True)).clamp_min(1e-12).log())
        return torch.cat(out) if out else torch.zeros(0, self.num_classes, device=f.device)


def train_classifier(features: torch.Tensor, labels, num_classes: int, kind: str = "mlp", epochs: int = 100,
                     lr: float = 1e-3, batch_size: int = 256, seed: int = 0, k: int = 200,
                     temperature: float = 0.07) -> nn.Module:
    """Train on ``features`` where they lie (CPU or GPU); the batch order comes from a CPU
    generator seeded with ``seed``, so a GPU run draws the same batches as a CPU run.
    ``kind="knn"`` trains nothing: a :class:`KNNClassifier` with ``k`` and ``temperature``."""
    dev = features.device
    if kind == "knn":
        return KNNClassifier(features, torch.as_tensor(np.asarray(labels)), num_classes, k, temperature).eval()
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
def predict(clf: nn.Module, features: torch.Tensor) -> np.ndarray:
    """The predicted class of each feature row (through :func:`logits`, so on the classifier's device)."""
    return logits(clf, features).argmax(1).numpy()


@torch.no_grad()
def logits(clf: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The classifier's logits for ``features`` (float32, on the CPU whatever device ``clf`` is on)."""
    dev = next(clf.buffers()).device
    return clf(features.to(dev)).float().cpu()


def classify(encoder: nn.Module, ds, train_index: np.ndarray, image_size: int, d: dict, seed: int, device: str = "cpu"):
    """One downstream task on one frozen encoder: train the classifier of ``d`` (the config's
    ``downstream`` section) on the features of ``ds.train.images[train_index]``, seeded by ``seed``.
    Returns the test predictions, the train and test features (on the CPU) and the test logits (CPU)."""
    ftr = extract_features(encoder, ds.train.images[train_index], image_size, device=device)
    fte = extract_features(encoder, ds.test.images, image_size, device=device)
    clf = train_classifier(ftr, ds.train.labels[train_index], ds.num_classes, d["classifier"], d["epochs"],
                           d["lr"], d["batch_size"], seed, d["knn_k"], d["knn_temperature"])
    lg = logits(clf, fte)
    return lg.argmax(1).numpy(), ftr.cpu(), fte.cpu(), lg
