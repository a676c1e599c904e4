"""pretrain.checkpoint_every: how often the resumable checkpoint is written."""
import numpy as np

from poisonedencoder import config as C
from poisonedencoder.ssl import pretrain as P


def _settings(**kw):
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(batch_size=16, width=4, image_size=8, **kw)
    return p


def _data():
    return P.PretrainSet.from_images(np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3), dtype=np.uint8))


def _checkpoint_writes(monkeypatch, tmp_path, **kw):
    written = []
    real = P.save_torch

    def spy(path, obj):
        if path.name == "checkpoint.pt":
            written.append(obj["epoch"])
        return real(path, obj)

    monkeypatch.setattr(P, "save_torch", spy)
    P.pretrain(_data(), _settings(**kw), tmp_path, log=lambda _: None)
    return written


def test_checkpoint_every_k_epochs_and_after_the_last(monkeypatch, tmp_path):
    assert _checkpoint_writes(monkeypatch, tmp_path / "a", epochs=5, checkpoint_every=1) == [1, 2, 3, 4, 5]
    assert _checkpoint_writes(monkeypatch, tmp_path / "b", epochs=5, checkpoint_every=2) == [2, 4, 5]


def test_snapshots_do_not_wait_for_checkpoints(tmp_path):
    P.pretrain(_data(), _settings(epochs=4, checkpoint_every=3, snapshot_every=1), tmp_path, log=lambda _: None)
    assert sorted(f.name for f in (tmp_path / "snapshots").iterdir()) == [
        "epoch_00001.pt", "epoch_00002.pt", "epoch_00003.pt"]


def test_resume_from_a_sparse_checkpoint_continues_after_it(tmp_path):
    logs = []
    P.pretrain(_data(), _settings(epochs=3, checkpoint_every=2), tmp_path, log=lambda _: None)
    P.pretrain(_data(), _settings(epochs=5, checkpoint_every=2), tmp_path, log=logs.append)
    assert any("resuming after epoch 3" in s for s in logs)
