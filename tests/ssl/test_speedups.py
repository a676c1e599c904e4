"""``pretrain.compile`` and ``pretrain.memory_format``: resolved on the device, applied to the
model and the views, logged and recorded; outside what identifies a run or an encoder."""
import numpy as np
import pytest
import torch

from poisonedencoder import config as C
from poisonedencoder.core.errors import UserError
from poisonedencoder.core.torch_files import load_torch
from poisonedencoder.experiment import encoder_cache as EC
from poisonedencoder.ssl import pretrain as P
from poisonedencoder.ssl import speedups as S
from poisonedencoder.ssl.pretrain import PretrainSet, pretrain
from poisonedencoder.ssl.step import train_step

CL = torch.channels_last


def _params(**kw):
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(epochs=1, batch_size=16, width=4, image_size=8, precision="fp32")
    p.update(kw)
    return p


def _data():
    rng = np.random.default_rng(0)
    return PretrainSet.from_images(rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8))


def _train(tmp_path, name, **kw):
    lines = []
    model = pretrain(_data(), _params(**kw), tmp_path / name, seed=1, log=lines.append)
    return model, lines, load_torch(tmp_path / name / "encoder.pt")


def test_auto_compiles_on_cuda_only_and_true_false_force_it():
    assert S.resolve_compile("auto", "cuda") and S.resolve_compile("auto", "cuda:1")
    assert not S.resolve_compile("auto", "cpu")
    for device in ("cpu", "cuda"):
        assert S.resolve_compile(True, device) and not S.resolve_compile(False, device)


def test_auto_memory_format_is_channels_last_as_before():
    assert S.resolve_memory_format("auto") == "channels_last"
    assert S.resolve_memory_format("contiguous") == "contiguous"
    assert S.torch_format("channels_last") is CL and S.torch_format("contiguous") is torch.contiguous_format


def test_defaults_and_bad_values():
    p = C.resolve({})["pretrain"]
    assert p["compile"] == "auto" and p["memory_format"] == "auto"
    assert C.resolve({}, ["pretrain.compile=false"])["pretrain"]["compile"] is False  # old configs stay valid
    assert C.resolve({}, ["pretrain.compile=true"])["pretrain"]["compile"] is True
    with pytest.raises(UserError, match="pretrain.compile must be auto, true or false, got 'fast'"):
        C.resolve({}, ["pretrain.compile=fast"])
    with pytest.raises(UserError, match="pretrain.memory_format must be one of auto, channels_last, contiguous"):
        C.resolve({}, ["pretrain.memory_format=nhwc"])


def test_the_gpu_preset_keeps_compile_off():
    assert C.resolve({"preset": "gpu"})["pretrain"]["compile"] is False


def _conv_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1]


def test_memory_format_sets_the_models_parameters_and_the_views(tmp_path, monkeypatch):
    import inspect

    formats, step = [], P.train_step

    def recording(*a, **k):
        formats.append(inspect.signature(step).bind(*a, **k).arguments.get("memory_format", CL))
        return step(*a, **k)

    monkeypatch.setattr(P, "train_step", recording)
    cl, lines, enc = _train(tmp_path, "cl", memory_format="channels_last")
    assert formats and set(formats) == {CL}
    assert all(w.is_contiguous(memory_format=CL) and not w.is_contiguous() for w in _conv_weights(cl))
    assert enc["memory_format"] == "channels_last"
    formats.clear()
    nchw, lines, enc = _train(tmp_path, "nchw", memory_format="contiguous")
    assert formats and set(formats) == {torch.contiguous_format}
    assert all(w.is_contiguous() and not w.is_contiguous(memory_format=CL) for w in _conv_weights(nchw))
    assert enc["memory_format"] == "contiguous"
    assert any("memory format contiguous" in line for line in lines)


def test_train_step_hands_the_views_over_in_the_memory_format():
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x1, x2):
            seen.append((x1.is_contiguous(memory_format=CL), x2.is_contiguous(memory_format=CL), x1.is_contiguous()))
            return self.w * (x1.mean() + x2.mean())

    probe = Probe()
    opt = torch.optim.SGD(probe.parameters(), lr=0.1)
    x = torch.rand(4, 3, 8, 8)
    train_step(probe, opt, x, x, memory_format=CL)
    train_step(probe, opt, x, x, memory_format=torch.contiguous_format)
    assert seen == [(True, True, False), (False, False, True)]


def test_auto_on_the_cpu_does_not_compile_and_says_so(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, **_kw: calls.append(module) or module)
    model, lines, enc = _train(tmp_path, "auto")
    assert calls == [] and enc["compile"] is False and enc["memory_format"] == "channels_last"
    assert any("compile off (auto: cpu), memory format channels_last (auto)" in line for line in lines)
    _, lines, enc = _train(tmp_path, "on", compile=True)
    assert len(calls) == 1 and isinstance(calls[0], P._ContrastiveStep) and enc["compile"] is True
    assert any("compile on, memory format" in line for line in lines)


def test_auto_is_the_former_default_on_the_cpu_in_weights_and_keys(tmp_path):
    """``compile: auto`` and ``memory_format: auto`` train on the CPU what ``compile: false`` (the
    former default, channels_last) trained, under the same encoder cache key and fingerprint."""
    new, _, _ = _train(tmp_path, "new")
    old, _, _ = _train(tmp_path, "old", compile=False, memory_format="channels_last")
    sn, so = new.state_dict(), old.state_dict()
    assert set(sn) == set(so) and all(torch.equal(sn[k], so[k]) for k in sn)
    data = _data()
    former = {k: v for k, v in _params(compile=False).items() if k != "memory_format"}  # the settings before
    key = EC.content_key(data, former, 0, "cpu")
    assert EC.content_key(data, _params(), 0, "cpu") == key
    assert EC.content_key(data, _params(memory_format="channels_last"), 0, "cpu") == key
    assert EC.content_key(data, _params(memory_format="contiguous"), 0, "cpu") != key
    assert EC.content_key(data, _params(compile=True), 0, "cpu") != key
    cfg = C.resolve({"preset": "demo"})
    fp = C.experiment_fingerprint(cfg)
    for override in ("pretrain.compile=true", "pretrain.memory_format=contiguous"):
        assert C.experiment_fingerprint(C.resolve({"preset": "demo"}, [override])) == fp
