"""evaluate --encoder: encoders trained anywhere (TorchScript or a state_dict of a named
architecture) measured like the toolkit's own, on the run's target inputs."""
import hashlib
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from poisonedencoder.cli import main
from poisonedencoder.core.errors import UserError
from poisonedencoder.experiment.external import NORMALIZE, build_arch, load_encoder
from poisonedencoder.core.torch_files import load_torch
from poisonedencoder.ssl.models import CNN7

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "digits_demo.yaml")
FAST = ["--set", "seeds=null", "--set", "pretrain.epochs=1", "--set", "pretrain_data.num_images=300",
        "--set", "pretrain.width=8", "--set", "downstream.epochs=2", "--set", "attack.num_references=5"]
NUMBERS = ("CA", "PA", "ASR", "clean_ASR", "intervals")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript is what outside users export


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny digits run of the toolkit (clean and poisoned CNN7, width 8) and its metrics; the two
    backbones saved as a state_dict with a ``backbone.`` prefix (nested under ``state_dict``, as
    training scripts save them) and as TorchScript."""
    tmp = tmp_path_factory.mktemp("outside")
    out, cache = tmp / "run", tmp / "cache"
    assert main(["run", CONFIG, "--out", str(out), "--cache-dir", str(cache), *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    files = {}
    for name, path in m["encoders"].items():
        sd = load_torch(path)["backbone"]
        torch.save({"state_dict": {f"backbone.{k}": v for k, v in sd.items()}, "epoch": 1}, tmp / f"{name}_sd.pt")
        net = CNN7(8)
        net.load_state_dict(sd)
        torch.jit.script(net.eval()).save(str(tmp / f"{name}_ts.pt"))
        files[name] = (tmp / f"{name}_sd.pt", tmp / f"{name}_ts.pt")
    return {"out": out, "cache": cache, "metrics": m, "files": files, "tmp": tmp}


def _evaluate(f, *args):
    rc = main(["evaluate", CONFIG, "--out", str(f["out"]), "--cache-dir", str(f["cache"]), *FAST, *map(str, args)])
    assert rc == 0
    return json.loads((f["out"] / "metrics.json").read_text())


def _per_target(m, enc="poisoned"):
    return [(t[f"{enc}_prediction"], t[f"{enc}_margin"]) for t in m["tasks"][0]["targets"]]


def test_a_toolkit_encoder_as_state_dict_and_as_torchscript_gives_the_toolkits_numbers(finished):
    f, m0 = finished, finished["metrics"]
    (p_sd, p_ts), (c_sd, c_ts) = f["files"]["poisoned"], f["files"]["clean"]
    m_sd = _evaluate(f, "--encoder", p_sd, "--clean-encoder", c_sd, "--arch", "cnn7")  # width: the config's (8)
    m_ts = _evaluate(f, "--encoder", p_ts, "--clean-encoder", c_ts, "--trust-torchscript")
    for m in (m_sd, m_ts):
        assert {k: m[k] for k in NUMBERS} == {k: m0[k] for k in NUMBERS}
        for enc in ("clean", "poisoned"):
            assert [p for p, _ in _per_target(m, enc)] == [p for p, _ in _per_target(m0, enc)]
            assert [g for _, g in _per_target(m, enc)] == pytest.approx([g for _, g in _per_target(m0, enc)], abs=1e-4)
    # what was measured is recorded: each file's sha256, its format, the normalization used
    for m, (p, c) in ((m_sd, (p_sd, c_sd)), (m_ts, (p_ts, c_ts))):
        for name, path in (("poisoned", p), ("clean", c)):
            info = m["encoder_files"][name]
            assert info["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
            assert info["path"] == str(Path(path).absolute()) and info["normalize"] == "none"
    assert m_sd["encoder_files"]["poisoned"]["format"] == "state_dict"
    assert m_sd["encoder_files"]["poisoned"]["prefix"] == "backbone."
    assert m_ts["encoder_files"]["poisoned"]["format"] == "torchscript"
    report = (f["out"] / "report.md").read_text()
    assert hashlib.sha256(Path(p_ts).read_bytes()).hexdigest() in report


def test_without_a_clean_encoder_ca_and_clean_asr_are_not_measured(finished):
    f, m0 = finished, finished["metrics"]
    m = _evaluate(f, "--encoder", f["files"]["poisoned"][1], "--trust-torchscript")
    assert m["CA"] is None and m["clean_ASR"] is None and m["intervals"]["CA"] is None
    assert (m["PA"], m["ASR"]) == (m0["PA"], m0["ASR"])
    assert all(t["clean_margin"] is None and t["clean_prediction"] is None for t in m["tasks"][0]["targets"])
    assert m["margins"]["clean"]["margin"]["mean"] is None
    assert m["margins"]["poisoned"]["margin"]["mean"] == pytest.approx(m0["margins"]["poisoned"]["margin"]["mean"], abs=1e-4)
    assert "not measured" in (f["out"] / "report.md").read_text()


def test_normalize_and_prefix_options_change_what_is_measured(finished, tmp_path):
    f, m0 = finished, finished["metrics"]
    # --normalize imagenet on an encoder that normalizes itself: a different input, other margins
    m = _evaluate(f, "--encoder", f["files"]["poisoned"][1], "--normalize", "imagenet", "--trust-torchscript")
    assert m["encoder_files"]["poisoned"]["normalize"] == "imagenet"
    assert [g for _, g in _per_target(m)] != pytest.approx([g for _, g in _per_target(m0)], abs=1e-3)
    # a prefix that is not one of the usual ones: only --prefix finds the backbone's keys
    sd = load_torch(f["files"]["poisoned"][0])["state_dict"]
    odd = tmp_path / "odd.pt"
    torch.save({f"net.{k[len('backbone.'):]}": v for k, v in sd.items()}, odd)
    with pytest.raises(UserError, match="unexpected key 'net.features.0.weight'"):
        load_encoder(odd, arch="cnn7", width=8)
    m = _evaluate(f, "--encoder", odd, "--arch", "cnn7", "--width", 8, "--prefix", "net.")
    assert m["encoder_files"]["poisoned"]["prefix"] == "net."
    assert [p for p, _ in _per_target(m)] == [p for p, _ in _per_target(m0)]
    assert [g for _, g in _per_target(m)] == pytest.approx([g for _, g in _per_target(m0)], abs=1e-4)


def test_mismatched_state_dicts_are_one_line_errors_naming_keys(finished, capsys):
    f = finished
    p_sd = f["files"]["poisoned"][0]
    base = ["evaluate", CONFIG, "--out", str(f["tmp"] / "never"), "--cache-dir", str(f["cache"]), *FAST, "--encoder", str(p_sd)]
    expected = sorted(k for k in build_arch("resnet18-cifar").state_dict()
                      if k.split(".")[-1] not in ("input_mean", "input_std", "num_batches_tracked"))
    cases = [(["--arch", "resnet18-cifar"], f"missing key '{expected[0]}'"),
             (["--arch", "resnet18-cifar"], "unexpected key 'features.0.weight'"),
             (["--arch", "cnn7", "--width", "16"], "features.0.weight has shape (8, 3, 3, 3) in the file"),
             ([], "give --arch"),
             (["--arch", "vgg"], "unknown --arch 'vgg'"),
             (["--arch", "cnn7", "--prefix", "head."], "no key of")]
    for extra, msg in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err, (extra, err)
    assert not (f["tmp"] / "never").exists()  # refused before any work
    assert main(["evaluate", CONFIG, "--out", str(f["tmp"] / "never"), *FAST, "--arch", "cnn7"]) == 2
    assert "--arch needs --encoder" in capsys.readouterr().err
    (f["tmp"] / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(base[:-1] + [str(f["tmp"] / "junk.pt"), "--arch", "cnn7"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_torchvision_resnets_load_without_their_classifier_and_normalize_as_imagenet(tmp_path):
    torch.manual_seed(0)
    for arch, dim in (("resnet18", 512), ("resnet50", 2048)):
        import torchvision

        ref = getattr(torchvision.models, arch)(weights=None).eval()  # a supervised checkpoint: fc included
        torch.save({"model": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / f"{arch}.pt")
        enc, info = load_encoder(tmp_path / f"{arch}.pt", arch=arch, image_size=32)
        assert info["feature_dim"] == dim and info["prefix"] == "module." and info["normalize"] == "imagenet"
        ref.fc = nn.Identity()
        x = torch.rand(3, 3, 32, 32)
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZE["imagenet"])
        with torch.no_grad():
            assert torch.allclose(enc(x), ref((x - mean) / std), atol=1e-5)
            assert not torch.allclose(enc(x), ref(x), atol=1e-3)
        enc, info = load_encoder(tmp_path / f"{arch}.pt", arch=arch, normalize="cifar10", image_size=32)
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZE["cifar10"])
        with torch.no_grad():
            assert torch.allclose(enc(x), ref((x - mean) / std), atol=1e-5)


def test_the_toolkits_architecture_saved_without_its_statistics_normalizes_only_outside(tmp_path):
    net = CNN7(4).eval()
    sd = {k: v for k, v in net.state_dict().items() if not k.startswith("input_")}
    torch.save(sd, tmp_path / "plain.pt")
    enc, info = load_encoder(tmp_path / "plain.pt", arch="cnn7", width=4, image_size=16)
    assert info["normalize"] == "imagenet" and not info["own_input_stats"]
    net.input_mean.zero_()
    net.input_std.fill_(1.0)
    x = torch.rand(2, 3, 16, 16)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZE["imagenet"])
    with torch.no_grad():
        assert torch.allclose(enc(x), net((x - mean) / std), atol=1e-5)


def test_torchscript_outputs_are_flattened_and_a_tuple_output_is_refused(tmp_path):
    pooled = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1))  # (N, 5, 1, 1), like a ResNet cut before fc
    torch.jit.script(pooled).save(str(tmp_path / "pooled.pt"))
    enc, info = load_encoder(tmp_path / "pooled.pt", image_size=8, trust_torchscript=True)
    assert info["feature_dim"] == 5 and info["normalize"] == "imagenet" and enc(torch.rand(4, 3, 8, 8)).shape == (4, 5)

    class Two(nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.amax((2, 3))

    torch.jit.script(Two()).save(str(tmp_path / "two.pt"))
    with pytest.raises(UserError, match="not a tensor of features"):
        load_encoder(tmp_path / "two.pt", image_size=8, trust_torchscript=True)
    torch.jit.script(nn.Conv2d(3, 4, 40)).save(str(tmp_path / "big.pt"))  # a kernel larger than the images
    with pytest.raises(UserError, match="fails on a batch of 2x3x8x8"):
        load_encoder(tmp_path / "big.pt", image_size=8, trust_torchscript=True)


def test_timm_architectures_are_built_by_timm_or_name_the_install(tmp_path, monkeypatch):
    calls = []

    def create_model(name, pretrained, num_classes):
        calls.append((name, pretrained, num_classes))
        return nn.Sequential(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    torch.save(create_model("x", False, 0).state_dict(), tmp_path / "t.pt")
    calls.clear()
    enc, info = load_encoder(tmp_path / "t.pt", arch="timm:tiny_net", image_size=8)
    assert calls == [("tiny_net", False, 0)] and info["feature_dim"] == 6 and info["arch"] == "timm:tiny_net"
    monkeypatch.setitem(sys.modules, "timm", None)  # not installed
    with pytest.raises(UserError, match="pip install timm"):
        load_encoder(tmp_path / "t.pt", arch="timm:tiny_net", image_size=8)
