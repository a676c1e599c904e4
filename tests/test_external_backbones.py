"""evaluate --arch loads every backbone the toolkit trains, by the one registry
(``ssl/models.BACKBONES``), from a file saved the way pre-training saves ``encoder.pt``."""
import pytest
import torch

from poisonedencoder.experiment import external
from poisonedencoder.core.errors import UserError
from poisonedencoder.experiment.external import arch_names, load_encoder, toolkit_archs
from poisonedencoder.core.torch_files import save_torch
from poisonedencoder.ssl.models import BACKBONES, build_backbone, set_input_stats, uses_width


def _trained(name: str, width: int) -> torch.nn.Module:
    """A backbone as pre-training leaves it: its own input statistics, BatchNorm statistics not the defaults."""
    torch.manual_seed(0)
    net = build_backbone(name, width)
    set_input_stats(net, (0.3, 0.4, 0.5), (0.2, 0.25, 0.3))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _save_like_pretrain(net: torch.nn.Module, path):
    save_torch(path, {"backbone": net.state_dict(), "loss": [1.0], "precision": "fp32", "augmentation": "batched",
                      "views": {"crop_scale": [0.2, 1.0], "view_overlap": None, "drop_disagreeing": False}})


def test_every_registered_backbone_has_an_arch_name():
    assert sorted(toolkit_archs().values()) == sorted(BACKBONES)
    assert {"cnn7", "resnet18-cifar", "resnet18w"} <= set(toolkit_archs())
    assert arch_names()[:2] == ["resnet18", "resnet50"] and arch_names()[-1] == "timm:NAME"
    assert external.ARCHS == tuple(arch_names())


@pytest.mark.parametrize("arch", sorted(toolkit_archs()))
def test_a_toolkit_encoder_loads_with_its_arch_and_gives_the_same_features(tmp_path, arch):
    name, width = toolkit_archs()[arch], 4
    net = _trained(name, width)
    _save_like_pretrain(net, tmp_path / "encoder.pt")
    enc, info = load_encoder(tmp_path / "encoder.pt", arch=arch, width=width, image_size=16)
    assert info["format"] == "state_dict" and info["arch"] == arch and info["prefix"] == ""
    assert info["own_input_stats"] and info["normalize"] == "none"
    assert info.get("width") == (width if uses_width(name) else None)
    assert info["feature_dim"] == net.feature_dim
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(enc(x), net(x), atol=1e-5)


def test_a_width_that_differs_from_the_files_names_the_width(tmp_path):
    _save_like_pretrain(_trained("resnet18w", 4), tmp_path / "encoder.pt")
    with pytest.raises(UserError, match=r"does not fit --arch resnet18w --width 8: conv1.weight has shape \(4, 3, 3, 3\)"):
        load_encoder(tmp_path / "encoder.pt", arch="resnet18w", width=8)


def test_the_toolkits_resnet18_under_torchvisions_name_points_to_its_own(tmp_path):
    _save_like_pretrain(_trained("resnet18", 64), tmp_path / "encoder.pt")
    with pytest.raises(UserError, match=r"does not fit --arch resnet18 .*; the toolkit's resnet18 is --arch resnet18-cifar$"):
        load_encoder(tmp_path / "encoder.pt", arch="resnet18")


def test_the_evaluate_help_names_every_arch_it_accepts():
    from poisonedencoder.cli import build_parser
    from poisonedencoder.experiment.external import arch_names

    sub = next(a for a in build_parser()._subparsers._group_actions if a.dest == "command")
    text = sub.choices["evaluate"].format_help()
    assert all(name in text for name in arch_names())
