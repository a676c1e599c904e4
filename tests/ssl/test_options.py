"""Every documented ``pretrain.*`` option has an effect: each test here fails if the loop ignores
its option (tiny data, one or two epochs of 3 steps)."""
import numpy as np
import pytest
import torch

from poisonedencoder import config as C
from poisonedencoder.defenses import build_defense
from poisonedencoder.core.errors import UserError
from poisonedencoder.core.torch_files import load_torch
from poisonedencoder.ssl import pretrain as P
from poisonedencoder.ssl.augment import AugmentParams
from poisonedencoder.ssl.pretrain import PretrainSet, pretrain


def _params(epochs=1, **kw):
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(epochs=epochs, batch_size=16, width=4, image_size=8, precision="fp32")
    p.update(kw)
    return p


def _data():
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8)
    wide = [rng.integers(0, 256, (8, 16, 3), dtype=np.uint8) for _ in range(5)]
    return PretrainSet.from_images(clean, wide)


def _train(tmp_path, name, **kw):
    return pretrain(_data(), _params(**kw), tmp_path / name, seed=1, log=lambda _: None)


_BASES: dict = {}


def _base(tmp_path_factory, algorithm="simclr", epochs=1):
    """The encoder with every option at its default, trained once per module."""
    if (algorithm, epochs) not in _BASES:
        d = tmp_path_factory.mktemp(f"base_{algorithm}_{epochs}")
        _BASES[algorithm, epochs] = pretrain(_data(), _params(epochs, algorithm=algorithm), d, seed=1, log=lambda _: None)
    return _BASES[algorithm, epochs]


def _differ(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) != set(sb) or any(sa[k].shape != sb[k].shape or not torch.equal(sa[k], sb[k]) for k in sa)


class _Count:
    """Counts the calls of a torchvision transform's forward."""

    def __init__(self, monkeypatch, cls):
        self.n, orig = 0, cls.forward

        def forward(mod, *a, **k):
            self.n += 1
            return orig(mod, *a, **k)

        monkeypatch.setattr(cls, "forward", forward)


# ---------------------------------------------------------------- augmentation: batched | per_sample
def test_per_sample_views_come_from_torchvision_and_differ_from_batched(monkeypatch):
    import torchvision.transforms as T

    crops = _Count(monkeypatch, T.RandomResizedCrop)
    data, idx, aug = _data(), torch.arange(53), AugmentParams(size=8)
    torch.manual_seed(0)
    b1, b2 = data.views(idx, aug, torch.Generator().manual_seed(0))
    assert crops.n == 0
    torch.manual_seed(0)
    s1, s2 = data.views(idx, aug, torch.Generator().manual_seed(0), per_sample=True)
    assert crops.n == 2 * 53  # two views of every image, image by image
    assert s1.shape == b1.shape == (53, 3, 8, 8) and not torch.allclose(s1, b1) and not torch.allclose(s2, b2)
    assert 0 <= float(s1.min()) and float(s1.max()) <= 1  # [0, 1], like the batched views


def test_the_loop_uses_the_per_sample_pipeline_when_asked(tmp_path, monkeypatch):
    import torchvision.transforms as T

    crops = _Count(monkeypatch, T.RandomResizedCrop)
    batched = _train(tmp_path, "b")
    assert crops.n == 0
    per_sample = _train(tmp_path, "p", augmentation="per_sample")
    assert crops.n == 2 * 3 * 16  # 3 steps of 16 images, two views each
    assert _differ(batched, per_sample)
    assert load_torch(tmp_path / "p" / "encoder.pt")["augmentation"] == "per_sample"


def test_per_sample_refuses_what_it_cannot_do():
    with pytest.raises(UserError, match="renamed per_sample"):
        C.resolve({}, ["pretrain.augmentation=reference"])
    with pytest.raises(UserError, match="defense overlapping_views needs pretrain.augmentation batched"):
        C.resolve({}, ["pretrain.augmentation=per_sample", "defense.name=overlapping_views"])
    policy = build_defense({"name": "overlapping_views"}).view_policy()
    with pytest.raises(UserError, match="overlapping_views needs pretrain.augmentation batched"):
        pretrain(_data(), _params(augmentation="per_sample"), "/nonexistent", log=lambda _: None, view_policy=policy)


# ---------------------------------------------------------------- options that change the encoder
CHANGES = [
    ("crop_scale", [1.0, 1.0]), ("flip_p", 1.0), ("jitter", [0.0, 0.0, 0.0, 0.0]), ("jitter_p", 0.0),
    ("gray_p", 1.0), ("image_size", 16), ("temperature", 0.1), ("lr", 1e-2),
    ("weight_decay", 0.5), ("optimizer", "sgd"), ("projector", "linear"), ("projector", "none"),
    ("projection_dim", 8), ("batch_size", 8), ("width", 2), ("backbone", "resnet18"),
    ("precision", "bf16"), ("augmentation", "per_sample"), ("algorithm", "mocov2"), ("algorithm", "byol"),
    ("algorithm", "simsiam"),
]


@pytest.mark.parametrize("key, value", CHANGES, ids=[f"{k}={v}" for k, v in CHANGES])
def test_option_changes_the_trained_encoder(tmp_path, tmp_path_factory, key, value):
    base = _base(tmp_path_factory)
    other = _train(tmp_path, "other", **{key: value})
    assert _differ(base, other)


HOOKS = [("overlapping_views", {"min_overlap": 0.9}), ("drop_disagreeing", {"fraction": 0.5})]


@pytest.mark.parametrize("defense, settings", HOOKS, ids=[d for d, _ in HOOKS])
def test_training_hook_changes_the_trained_encoder(tmp_path, tmp_path_factory, defense, settings):
    """The in-training defenses' hooks (a view policy, a pair filter) reach the loop."""
    base = _base(tmp_path_factory)
    hooks = build_defense({"name": defense, defense: settings}).training_hooks()
    other = pretrain(_data(), _params(), tmp_path / "other", seed=1, log=lambda _: None, **hooks)
    assert _differ(base, other)


SECTIONS = [("mocov2", "temperature", 0.05), ("mocov2", "momentum", 0.5), ("mocov2", "queue_size", 32),
            ("byol", "hidden_dim", 16), ("byol", "output_dim", 8), ("byol", "ema_base", 0.5),
            ("simsiam", "output_dim", 16), ("simsiam", "hidden_dim", 8)]


@pytest.mark.parametrize("algorithm, key, value", SECTIONS, ids=[f"{a}.{k}={v}" for a, k, v in SECTIONS])
def test_method_option_changes_the_trained_encoder(tmp_path, tmp_path_factory, algorithm, key, value):
    base = _base(tmp_path_factory, algorithm, 2)
    p = _params(2, algorithm=algorithm)
    p[algorithm] = {**p[algorithm], key: value}
    other = pretrain(_data(), p, tmp_path / "other", seed=1, log=lambda _: None)
    assert _differ(base, other)


def test_epochs_is_the_number_of_epochs(tmp_path):
    _train(tmp_path, "e3", epochs=3)
    assert len(load_torch(tmp_path / "e3" / "encoder.pt")["loss"]) == 3


def test_temperature_changes_the_loss():
    from poisonedencoder.ssl.methods import build_method

    x1, x2 = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.rand(8, 3, 8, 8)
    losses = []
    for t in (0.5, 0.1):
        torch.manual_seed(0)
        with torch.no_grad():
            losses.append(float(build_method(_params(temperature=t)).loss(x1, x2)))
    assert abs(losses[0] - losses[1]) > 1e-3


# ---------------------------------------------------------------- options that change how, not what
def test_threads_sets_torch_threads(tmp_path):
    before = torch.get_num_threads()
    try:
        _train(tmp_path, "t", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_snapshot_every_keeps_snapshots(tmp_path):
    _train(tmp_path, "s", epochs=3, snapshot_every=1)
    assert sorted(f.name for f in (tmp_path / "s" / "snapshots").iterdir()) == ["epoch_00001.pt", "epoch_00002.pt"]
    _train(tmp_path, "none", epochs=3)
    assert not (tmp_path / "none" / "snapshots").exists()


def test_compile_compiles_the_step(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, **_kw: calls.append(module) or module)
    _train(tmp_path, "c", compile=True)
    assert len(calls) == 1 and isinstance(calls[0], P._ContrastiveStep)
    _train(tmp_path, "n")
    assert len(calls) == 1
