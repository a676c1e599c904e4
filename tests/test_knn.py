"""downstream.classifier: knn, the weighted k-nearest-neighbour vote on cosine similarity."""
import math

import numpy as np
import torch

from poisonedencoder import config as C
from poisonedencoder.downstream import KNNClassifier, classify, logits, train_classifier


def _reference_vote(train, labels, test, num_classes, k, t):
    """The vote written out per test input, in plain Python."""
    out = []
    for x in test:
        sims = [float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))) for y in train]
        order = sorted(range(len(train)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * num_classes
        for i in order:
            votes[labels[i]] += math.exp(sims[i] / t)
        out.append([v / sum(votes) for v in votes])
    return np.array(out)


def test_vote_matches_a_hand_written_reference():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(40, 6)), rng.normal(size=(9, 6))
    labels = rng.integers(0, 3, 40)
    knn = KNNClassifier(torch.tensor(train), torch.tensor(labels), 3, k=7, temperature=0.5)
    got = knn(torch.tensor(test)).exp().numpy()
    assert np.allclose(got, _reference_vote(train, labels, test, 3, 7, 0.5), atol=1e-5)


def test_k_and_temperature_change_the_verdict():
    # one close neighbour of class 0, three slightly farther of class 1
    train = torch.tensor([[1.0, 0.0], [0.9, 0.3], [0.9, 0.31], [0.9, 0.29]])
    labels = torch.tensor([0, 1, 1, 1])
    x = torch.tensor([[1.0, 0.02]])
    assert KNNClassifier(train, labels, 2, k=1)(x).argmax(1).item() == 0
    assert KNNClassifier(train, labels, 2, k=4)(x).argmax(1).item() == 1
    sharp = KNNClassifier(train, labels, 2, k=4, temperature=0.001)(x).exp()[0, 0].item()
    soft = KNNClassifier(train, labels, 2, k=4, temperature=10.0)(x).exp()[0, 0].item()
    assert sharp > 0.99 and abs(soft - 0.25) < 0.01  # a cold vote follows the nearest, a warm one counts heads


def test_train_classifier_knn_trains_nothing_and_its_logits_are_log_vote_shares():
    f = torch.randn(50, 4)
    y = (f[:, 0] > 0).long().numpy()
    clf = train_classifier(f, y, 2, "knn", epochs=1000, k=5)
    assert isinstance(clf, KNNClassifier) and not list(clf.parameters())
    lg = logits(clf, f)
    assert torch.allclose(lg.exp().sum(1), torch.ones(50), atol=1e-5)
    assert (lg.argmax(1).numpy() == y).mean() > 0.9


def test_the_pipeline_uses_the_knn_settings(toy_dataset):
    cfg = C.resolve({"preset": "demo"}, ["downstream.classifier=knn", "downstream.knn_k=3", "downstream.knn_temperature=0.2"])
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    pred, ftr, fte, lg = classify(enc, toy_dataset, np.arange(len(toy_dataset.train)), 8, cfg["downstream"], cfg["seed"])
    want = _reference_vote(ftr.numpy(), toy_dataset.train.labels, fte.numpy(), 4, 3, 0.2)
    assert np.allclose(lg.exp().numpy(), want, atol=1e-4)
    assert (pred == want.argmax(1)).all()
