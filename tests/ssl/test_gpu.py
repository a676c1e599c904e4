"""The GPU path: data and augmentation on the device, bf16 autocast, torch.compile.
Skipped on machines without CUDA (CI); run on a GPU with ``pytest tests/ssl/test_gpu.py``."""
import copy

import numpy as np
import pytest
import torch

from poisonedencoder.config import defaults
from poisonedencoder.ssl.augment import AugmentParams, apply_view, sample_view_params
from poisonedencoder.ssl.pretrain import PretrainSet, pretrain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _data():
    rng = np.random.default_rng(0)
    return PretrainSet.from_images(rng.integers(0, 256, (128, 16, 16, 3), dtype=np.uint8),
                                   list(rng.integers(0, 256, (8, 16, 32, 3), dtype=np.uint8)))


def _settings(**kw):
    p = copy.deepcopy(defaults()["pretrain"])
    p.update(width=8, image_size=16, epochs=2, batch_size=32, precision="fp32",  # precision auto would differ by device
             compile=False)  # compile auto too: on here, off on the CPU
    p.update(kw)
    return p


def test_augmentation_on_the_gpu_equals_the_cpu():
    rng = np.random.default_rng(1)
    imgs = torch.from_numpy(rng.integers(0, 256, (64, 3, 16, 32), dtype=np.uint8))
    p = AugmentParams(size=16)
    v = sample_view_params(64, 16, 32, p, torch.Generator().manual_seed(0))
    cpu = apply_view(imgs, v, 16)
    gpu = apply_view(imgs.cuda(), v, 16)
    assert gpu.is_cuda
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)


def test_pretrain_on_the_gpu_follows_the_cpu_run(tmp_path):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    cpu = pretrain(_data(), _settings(epochs=1, optimizer="sgd", lr=0.01), tmp_path / "cpu", log=lambda _: None)
    gpu = pretrain(_data(), _settings(epochs=1, optimizer="sgd", lr=0.01), tmp_path / "gpu", device="cuda",
                   log=lambda _: None)
    lc = torch.load(tmp_path / "cpu" / "encoder.pt", weights_only=True)["loss"]
    lg = torch.load(tmp_path / "gpu" / "encoder.pt", weights_only=True)["loss"]
    assert abs(lc[0] - lg[0]) < 1e-3
    w = "backbone.features.0.weight"
    assert torch.allclose(cpu.state_dict()[w], gpu.state_dict()[w].cpu(), atol=1e-3)


@pytest.mark.parametrize("kw", [{"precision": "bf16"}, {"compile": True}, {"precision": "bf16", "compile": True}])
def test_bf16_and_compile_train_on_the_gpu(tmp_path, kw):
    pretrain(_data(), _settings(**kw), tmp_path, device="cuda", log=lambda _: None)
    loss = torch.load(tmp_path / "encoder.pt", weights_only=True)["loss"]
    assert len(loss) == 2 and all(np.isfinite(loss)) and loss[1] < loss[0] + 0.1


def test_auto_compiles_in_channels_last_on_the_gpu(tmp_path, monkeypatch):
    calls, lines = [], []
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kw: calls.append(module) or compile_(module, **kw))
    model = pretrain(_data(), _settings(compile="auto", memory_format="auto"), tmp_path, device="cuda", log=lines.append)
    enc = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert len(calls) == 1 and enc["compile"] is True and enc["memory_format"] == "channels_last"
    assert any("compile on (auto: cuda), memory format channels_last (auto)" in line for line in lines)
    w = model.backbone.features[3].weight
    assert w.is_cuda and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


@pytest.mark.parametrize("algorithm", ["mocov2", "byol", "simsiam"])
def test_every_method_trains_on_the_gpu_in_bf16(tmp_path, algorithm):
    pretrain(_data(), _settings(algorithm=algorithm, precision="bf16"), tmp_path, device="cuda", log=lambda _: None)
    loss = torch.load(tmp_path / "encoder.pt", weights_only=True)["loss"]
    assert all(np.isfinite(loss))


def test_witches_brew_crafts_on_the_gpu():
    from poisonedencoder.attack import WitchesBrew
    from poisonedencoder.attack.witches_brew import Surrogate
    from poisonedencoder.data import ImageDataset, ImageSplit
    from poisonedencoder.ssl.methods import build_method

    rng = np.random.default_rng(0)
    split = lambda n: ImageSplit(rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8), np.arange(n) % 4)  # noqa: E731
    ds = ImageDataset("toy", list("abcd"), split(40), split(20))
    from poisonedencoder.attack import select_targets

    model = build_method(_settings()).cuda()
    wb = WitchesBrew(poisoning_rate=0.2, num_references=4, steps=5)
    poisons = wb.craft(select_targets(ds, 0, 1), [ds], 40,
                       surrogate=Surrogate(model, AugmentParams(size=16), "cuda"))
    assert len(poisons) == 8 and all(np.abs(p.image.astype(int) - ds.train.images[p.reference_index]).max() <= 8
                                     for p in poisons)


@pytest.mark.parametrize("algorithm", ["simclr", "mocov2"])
def test_no_host_sync_per_step_on_the_gpu(tmp_path, algorithm):
    """CUDA's own sync detector (set_sync_debug_mode) warns once per synchronising call: the same
    count for three times the steps, so none comes per step."""
    import warnings

    rng = np.random.default_rng(0)
    counts = {}
    for steps in (2, 2, 6):  # the first run warms up (CUDA's lazy start, constants copied once): not counted
        data = PretrainSet.from_images(rng.integers(0, 256, (32 * steps, 16, 16, 3), dtype=np.uint8))
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pretrain(data, _settings(algorithm=algorithm, epochs=3, checkpoint_every=3),
                         tmp_path / f"{steps}_{len(counts)}", device="cuda", log=lambda _: None)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        counts[steps] = sum("synchroniz" in str(w.message) for w in caught)
    assert counts[2] == counts[6], counts
