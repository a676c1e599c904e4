"""The downstream stage runs where the config says (issue: it ran on the CPU even with --device cuda)."""
import numpy as np
import pytest
import torch

from poisonedencoder import downstream as DS


def test_downstream_extracts_features_on_the_configured_device(monkeypatch, toy_dataset):
    seen = []

    def fake_extract(_backbone, images, _size, _batch_size=1024, device="cpu", what="the encoder"):  # noqa: ARG001
        seen.append(device)
        return torch.as_tensor(images.reshape(len(images), -1)[:, :16], dtype=torch.float32)

    monkeypatch.setattr(DS, "extract_features", fake_extract)
    d = {"classifier": "linear", "epochs": 2, "lr": 1e-2, "batch_size": 16, "knn_k": 200, "knn_temperature": 0.07}
    pred, ftr, _, logits = DS.classify(None, toy_dataset, np.arange(len(toy_dataset.train)), 8, d, 0, "cuda:7")
    assert seen == ["cuda:7", "cuda:7"]
    assert pred.shape == (len(toy_dataset.test),) and ftr.device.type == "cpu"
    assert logits.shape == (len(toy_dataset.test), 4) and logits.device.type == "cpu"  # margins are computed on the CPU
    assert (logits.argmax(1).numpy() == pred).all()


def test_classifier_trains_where_its_features_lie():
    f = torch.randn(64, 5)
    y = (f[:, 0] > 0).long()
    clf = DS.train_classifier(f, y.numpy(), 2, "linear", epochs=30, lr=0.05, batch_size=16)
    assert next(clf.parameters()).device == f.device
    assert (DS.predict(clf, f) == y.numpy()).mean() > 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_classifier_on_the_gpu_follows_the_cpu():
    f = torch.randn(256, 8)
    y = (f[:, :2].sum(1) > 0).long().numpy()
    cpu = DS.train_classifier(f, y, 2, "mlp", epochs=5, seed=1)
    gpu = DS.train_classifier(f.cuda(), y, 2, "mlp", epochs=5, seed=1)
    assert next(gpu.parameters()).is_cuda
    assert (DS.predict(cpu, f) == DS.predict(gpu, f.cuda())).mean() > 0.95
