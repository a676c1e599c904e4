import numpy as np
import torch

from poisonedencoder import config as C
from poisonedencoder.ssl.augment import AugmentParams
from poisonedencoder.ssl.pretrain import PretrainSet, load_backbone, pretrain


def _params(epochs):
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(epochs=epochs, batch_size=16, width=4, image_size=8)
    return p


def _data():
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8)
    wide = [rng.integers(0, 256, (8, 16, 3), dtype=np.uint8) for _ in range(5)]
    tall = [rng.integers(0, 256, (16, 8, 3), dtype=np.uint8) for _ in range(3)]
    return PretrainSet.from_images(clean, wide + tall)


def test_pretrain_set_groups_shapes_and_batches_mix_them():
    data = _data()
    assert len(data) == 56 and sorted(data.shapes) == [(8, 8), (8, 16), (16, 8)]
    v1, v2 = data.views(torch.arange(56), AugmentParams(size=8),
                        torch.Generator().manual_seed(0))
    assert v1.shape == v2.shape == (56, 3, 8, 8)


def test_resume_from_checkpoint_equals_uninterrupted_training(tmp_path):
    data = _data()
    full = pretrain(data, _params(2), tmp_path / "a", seed=3, log=lambda s: None)
    pretrain(data, _params(1), tmp_path / "b", seed=3, log=lambda s: None)
    resumed = pretrain(data, _params(2), tmp_path / "b", seed=3, log=lambda s: None)  # resumes after epoch 1
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), k
    enc = load_backbone(tmp_path / "b" / "encoder.pt", _params(2))
    assert torch.allclose(enc.state_dict()["features.0.weight"], full.backbone.state_dict()["features.0.weight"])


def test_bf16_autocast_trains_close_to_fp32_with_an_fp32_loss(tmp_path):
    import pytest

    from poisonedencoder.errors import UserError

    data = _data()
    p32, p16 = _params(1), _params(1)
    p32["precision"], p16["precision"] = "fp32", "bf16"
    m32 = pretrain(data, p32, tmp_path / "fp32", seed=5, log=lambda s: None)
    m16 = pretrain(data, p16, tmp_path / "bf16", seed=5, log=lambda s: None)
    l32 = load_backbone_loss(tmp_path / "fp32")
    l16 = load_backbone_loss(tmp_path / "bf16")
    assert np.isfinite(l16).all() and abs(l16[0] - l32[0]) < 0.05 * l32[0]  # same data and seed: close losses
    w32, w16 = m32.backbone.features[0].weight, m16.backbone.features[0].weight
    assert w16.dtype == torch.float32 and not torch.equal(w32, w16)  # weights stay fp32; bf16 really ran
    with pytest.raises(UserError, match="precision"):
        C.resolve({}, ["pretrain.precision=fp16"])


def load_backbone_loss(d):
    from poisonedencoder.io import load_torch

    return np.array(load_torch(d / "encoder.pt")["loss"])
