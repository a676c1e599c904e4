"""Downstream classifiers on frozen encoder features (MLP feature-256-classes, or linear)."""
from __future__ import annotations

from typing import Annotated, Optional

import numpy as np
import torch
from pydantic import Field
from torch import nn

from .core.errors import UserError
from .core.settings import Number, Range, Settings
from .ssl.augment import to_input
from .ssl.settings import choice


class DownstreamSettings(Settings):
    """The ``downstream`` section: the classifiers trained on frozen features (CA, PA, ASR)."""

    classifier: str = Field("mlp", description="mlp (feature-256-classes) | linear | knn (weighted k-NN vote on cosine; "
                            "epochs, lr, batch_size unused)")
    knn_k: Annotated[int, Range(1, 10**6)] = Field(200, description="knn: neighbours that vote")
    knn_temperature: Annotated[Number, Range(0, 100, lo_open=True)] = Field(0.07, description="knn: each neighbour's vote weight is exp(cosine / temperature)")
    epochs: Annotated[int, Range(1, 100000)] = 100
    lr: Annotated[Number, Range(0, 100, lo_open=True)] = 1e-3
    batch_size: Annotated[int, Range(1, 1 << 20)] = 256
    num_train: Annotated[Optional[int], Range(1, 10**9)] = Field(None, description="downstream training inputs per task (null = the whole train split)")

    def check(self, where: str) -> None:
        choice(self.classifier, f"{where}.classifier", ("mlp", "linear", "knn"))


@torch.no_grad()
def extract_features(backbone: nn.Module, images: np.ndarray, size: int, batch_size: int = 1024,
                     device: str = "cpu", what: str = "the encoder") -> torch.Tensor:
    """Features of uint8 images ``(N, H, W, 3)`` from the frozen backbone (eval mode, no augmentation),
    computed on ``device`` and returned there (a GPU keeps them for the classifier). Features that
    hold NaN or Inf are a :class:`UserError` naming ``what`` (and the file of an encoder loaded from
    one): a classifier on them measures nothing (PA 0.1 on 10 classes) without a word."""
    backbone = backbone.to(device).eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = to_input(images[i:i + batch_size], size).to(device).contiguous(memory_format=torch.channels_last)
        out.append(backbone(x).float())
    f = torch.cat(out) if out else torch.zeros(0, device=device)
    bad = int((~torch.isfinite(f.reshape(len(f), -1))).any(1).sum()) if len(f) else 0
    if bad:
        src = getattr(backbone, "source", None)
        where = f" ({src['path']})" if isinstance(src, dict) and "path" in src else ""
        raise UserError(f"{what}{where} returned NaN or Inf features for {bad} of {len(images)} images: refused, since "
                        "classifiers on them measure nothing (NaN or Inf weights, or a training that diverged)")
    return f


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


def _new_classifier(features: torch.Tensor, num_classes: int, kind: str, seed: int) -> Classifier:
    """A fresh classifier on ``features``' device: initialized from the global RNG seeded with
    ``seed``, standardizing with ``features``' mean and standard deviation."""
    torch.manual_seed(seed)
    clf = Classifier(features.shape[1], num_classes, kind).to(features.device)
    clf.mean.copy_(features.mean(0))
    clf.std.copy_(features.std(0).clamp_min(1e-6))
    return clf


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
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).to(dev)
    clf = _new_classifier(features, num_classes, kind, seed)
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


def train_classifiers(features: list[torch.Tensor], labels, num_classes: int, kind: str = "mlp", epochs: int = 100,
                      lr: float = 1e-3, batch_size: int = 256, seed: int = 0, k: int = 200,
                      temperature: float = 0.07) -> list[nn.Module]:
    """One classifier per feature set in ``features`` (the same rows and ``labels`` for all), as
    :func:`train_classifier` trains each with ``seed``, but trained together: the M models'
    parameters are stacked into ``(M, ...)`` tensors, each batch is one batched matrix product
    per layer for all M, and one Adam step updates all of them. The loss is the sum of each
    model's mean cross-entropy, so each model's gradient is its own; Adam is elementwise; the
    models start from the weights :func:`train_classifier` would create and see the same batches.
    On a GPU this takes about the launches of one classifier instead of M.

    The results equal :func:`train_classifier`'s up to floating-point rounding (batched and
    single matrix products may round differently). Returns ordinary :class:`Classifier`
    modules, one per feature set. ``kind="knn"`` trains nothing, and feature sets of different
    widths, row counts or devices cannot be stacked: those are handled one by one with
    :func:`train_classifier`."""
    if not features:
        return []
    f0 = features[0]
    if kind == "knn" or any(f.shape != f0.shape or f.device != f0.device for f in features):
        return [train_classifier(f, labels, num_classes, kind, epochs, lr, batch_size, seed, k, temperature)
                for f in features]
    dev, m = f0.device, len(features)
    g = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).to(dev)
    models = [_new_classifier(f, num_classes, kind, seed) for f in features]
    layers = [[mod for mod in c.net.modules() if isinstance(mod, nn.Linear)] for c in models]
    # per layer: weights (M, out, in) and biases (M, 1, out), as leaves of their own
    params = [(torch.stack([ls[j].weight.detach() for ls in layers]).requires_grad_(),
               torch.stack([ls[j].bias.detach() for ls in layers]).unsqueeze(1).requires_grad_())
              for j in range(len(layers[0]))]
    # standardized once: the same elementwise operation the classifier applies to each batch
    x_all = torch.stack([(f - c.mean) / c.std for f, c in zip(features, models, strict=True)])
    opt = torch.optim.Adam([t for wb in params for t in wb], lr=lr)
    n = len(y)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g).to(dev)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            h = x_all.index_select(1, idx)
            for j, (w, b) in enumerate(params):
                if j:
                    h = h.relu()
                h = torch.baddbmm(b, h, w.transpose(1, 2))
            per_input = nn.functional.cross_entropy(h.reshape(-1, num_classes), y[idx].repeat(m), reduction="none")
            loss = per_input.view(m, -1).mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        for mi, ls in enumerate(layers):
            for (w, b), lin in zip(params, ls, strict=True):
                lin.weight.copy_(w[mi])
                lin.bias.copy_(b[mi, 0])
    return [c.eval() for c in models]


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
    return classify_many([encoder], ds, train_index, image_size, d, seed, device, batched=False)[0]


def classify_many(encoders: list[nn.Module], ds, train_index: np.ndarray, image_size: int, d: dict, seed: int,
                  device: str = "cpu", batched: bool = True, names: list[str] | None = None) -> list[tuple]:
    """:func:`classify` for each of ``encoders`` (the same task, training inputs and ``seed``):
    every encoder's features are extracted first, then their classifiers are trained together
    (:func:`train_classifiers`), or one after another with ``batched=False``. Returns
    :func:`classify`'s tuple per encoder, in order. ``names``: each encoder as an error names it."""
    labels = ds.train.labels[train_index]
    names = names or ["the encoder"] * len(encoders)
    feats = [(extract_features(e, ds.train.images[train_index], image_size, device=device, what=w),
              extract_features(e, ds.test.images, image_size, device=device, what=w))
             for e, w in zip(encoders, names, strict=True)]
    args = (labels, ds.num_classes, d["classifier"], d["epochs"], d["lr"], d["batch_size"], seed, d["knn_k"],
            d["knn_temperature"])
    if batched:
        clfs = train_classifiers([ftr for ftr, _ in feats], *args)
    else:
        clfs = [train_classifier(ftr, *args) for ftr, _ in feats]
    out = []
    for clf, (ftr, fte) in zip(clfs, feats, strict=True):
        lg = logits(clf, fte)
        out.append((lg.argmax(1).numpy(), ftr.cpu(), fte.cpu(), lg))
    return out
