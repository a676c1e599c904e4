import numpy as np
import torch

from poisonedencoder import config as C
from poisonedencoder.ssl.augment import AugmentParams
from poisonedencoder.ssl.pretrain import PretrainSet, load_backbone, pretrain


def _params(epochs):
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(epochs=epochs, batch_size=16, width=4, image_size=8, precision="fp32")
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
    # every image one flat color of its own (red = its number), no color augmentation: a view's
    # color says which image it was cut from
    flat = [np.full((8, 8, 3), (i, 100, 200), np.uint8) for i in range(48)]
    wide = [np.full((8, 16, 3), (48 + i, 100, 200), np.uint8) for i in range(5)]
    tall = [np.full((16, 8, 3), (53 + i, 100, 200), np.uint8) for i in range(3)]
    data = PretrainSet.from_images(np.stack(flat), wide + tall)
    aug = AugmentParams(size=8, jitter_p=0.0, gray_p=0.0)
    for per_sample in (False, True):
        torch.manual_seed(0)
        index = torch.tensor([3, 50, 7, 54, 49, 0, 55])  # one batch drawn across all three shapes
        v1, v2 = data.views(index, aug, torch.Generator().manual_seed(0), per_sample=per_sample)
        assert v1.shape == v2.shape == (7, 3, 8, 8)
        for v in (v1, v2):  # flat views, each of one image's color
            px = (v * 255).round().flatten(2)
            assert (px == px[:, :, :1]).all() and (px[:, 1:, 0] == torch.tensor([100.0, 200.0])).all()
        ids1, ids2 = (v1 * 255).round()[:, 0, 0, 0], (v2 * 255).round()[:, 0, 0, 0]
        assert sorted(ids1.tolist()) == sorted(index.tolist())  # each image once, all shapes in one batch
        assert torch.equal(ids1, ids2)  # both views of a row come from the same image


def test_resume_from_checkpoint_equals_uninterrupted_training(tmp_path):
    data = _data()
    full = pretrain(data, _params(2), tmp_path / "a", seed=3, log=lambda _: None)
    pretrain(data, _params(1), tmp_path / "b", seed=3, log=lambda _: None)
    resumed = pretrain(data, _params(2), tmp_path / "b", seed=3, log=lambda _: None)  # resumes after epoch 1
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k
    enc = load_backbone(tmp_path / "b" / "encoder.pt", _params(2))
    assert torch.allclose(enc.state_dict()["features.0.weight"], full.backbone.state_dict()["features.0.weight"])


def test_bf16_autocast_trains_close_to_fp32_with_an_fp32_loss(tmp_path):
    import pytest

    from poisonedencoder.core.errors import UserError

    data = _data()
    p32, p16 = _params(1), _params(1)
    p32["precision"], p16["precision"] = "fp32", "bf16"
    m32 = pretrain(data, p32, tmp_path / "fp32", seed=5, log=lambda _: None)
    m16 = pretrain(data, p16, tmp_path / "bf16", seed=5, log=lambda _: None)
    l32 = load_backbone_loss(tmp_path / "fp32")
    l16 = load_backbone_loss(tmp_path / "bf16")
    assert np.isfinite(l16).all() and abs(l16[0] - l32[0]) < 0.05 * l32[0]  # same data and seed: close losses
    w32, w16 = m32.backbone.features[0].weight, m16.backbone.features[0].weight
    assert w16.dtype == torch.float32 and not torch.equal(w32, w16)  # weights stay fp32; bf16 really ran
    with pytest.raises(UserError, match="precision"):
        C.resolve({}, ["pretrain.precision=fp16"])


def load_backbone_loss(d):
    from poisonedencoder.core.torch_files import load_torch

    return np.array(load_torch(d / "encoder.pt")["loss"])


def test_pretrain_set_takes_its_input_statistics_from_the_clean_images():
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 100, (20, 8, 8, 3), dtype=np.uint8)
    poisons = [np.full((8, 16, 3), 255, np.uint8)] * 5  # far brighter: must not enter the statistics
    data = PretrainSet.from_images(clean, poisons)
    x = clean.reshape(-1, 3) / 255
    assert np.allclose(data.mean.numpy(), x.mean(0), atol=1e-6) and np.allclose(data.std.numpy(), x.std(0), atol=1e-6)


def test_the_encoder_keeps_its_input_statistics_and_features_use_them(tmp_path):
    from poisonedencoder.downstream import extract_features
    from poisonedencoder.ssl.models import build_backbone

    rng = np.random.default_rng(2)
    dark = rng.integers(0, 60, (48, 8, 8, 3), dtype=np.uint8)  # far from CIFAR-10's statistics
    data = PretrainSet.from_images(dark)
    model = pretrain(data, _params(1), tmp_path / "d", seed=0, log=lambda _: None)
    assert torch.equal(model.backbone.input_mean, data.mean) and torch.equal(model.backbone.input_std, data.std)
    enc = load_backbone(tmp_path / "d" / "encoder.pt", _params(1))
    assert torch.equal(enc.input_mean, data.mean) and torch.equal(enc.input_std, data.std)
    # feature extraction normalizes with the stored statistics: the same as the bare network on
    # inputs normalized by hand, and not what CIFAR-10's statistics give
    f = extract_features(enc, dark[:8], 8)
    x = torch.as_tensor(dark[:8]).permute(0, 3, 1, 2).float() / 255
    by_hand = enc.features((x - data.mean.view(1, 3, 1, 1)) / data.std.view(1, 3, 1, 1))
    assert torch.allclose(f, by_hand, atol=1e-5)
    cifar = build_backbone("cnn7", 4)
    state = {k: v for k, v in enc.state_dict().items() if not k.startswith("input_")}
    cifar.load_state_dict(state)  # an encoder saved before the statistics were stored
    assert torch.allclose(cifar.input_mean, torch.tensor([0.4914, 0.4822, 0.4465]))
    assert not torch.allclose(extract_features(cifar.eval(), dark[:8], 8), f, atol=1e-3)


def test_a_log_gets_a_progress_line_at_least_every_30_seconds(tmp_path, monkeypatch):
    from poisonedencoder.ssl import pretrain as P

    now = [0.0]

    def clock():  # a fake clock: 7 s pass at every look
        now[0] += 7.0
        return now[0]

    monkeypatch.setattr(P, "_clock", clock)
    lines = []
    pretrain(_data(), _params(4), tmp_path / "p", seed=0, log=lines.append)  # 3 steps per epoch
    progress = [s for s in lines if "left" in s]
    # 12 steps, one look per step plus one per line: a line after every 30 s of the fake clock
    assert len(progress) >= 2, lines
    assert all("s per epoch" in s and "loss" in s and "of epoch" in s for s in progress)
    left = [float(s.split("about ")[1].split("s left")[0]) for s in progress]
    assert left == sorted(left, reverse=True)  # counts down
    assert any(s.startswith("pretrain: precision fp32") for s in lines)


def test_no_progress_lines_while_a_terminal_shows_the_bar(tmp_path, monkeypatch):
    import sys

    from poisonedencoder.ssl import pretrain as P

    now = [0.0]
    monkeypatch.setattr(P, "_clock", lambda: now.__setitem__(0, now[0] + 7.0) or now[0])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    lines = []
    pretrain(_data(), _params(2), tmp_path / "p", seed=0, log=lines.append)
    assert not [s for s in lines if "left" in s]
