"""Backbones: the width each one is built at is the width it has."""
import pytest
import torch

from poisonedencoder.ssl.models import build_backbone


def _params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("width", [8, 16])
def test_resnet18w_follows_width(width):
    m = build_backbone("resnet18w", width)
    assert m.feature_dim == 8 * width
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 8 * width)
    # every conv of stage 1 has `width` channels, stage 4 has 8 * width
    assert m.conv1.out_channels == width and m.layer4[-1].conv2.out_channels == 8 * width


def test_resnet18w_at_64_is_the_paper_resnet18():
    torch.manual_seed(0)
    a = build_backbone("resnet18", 1)      # width ignored: the paper's widths
    torch.manual_seed(0)
    b = build_backbone("resnet18w", 64)
    assert a.feature_dim == b.feature_dim == 512 and _params(a) == 11_168_832
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_narrow_resnet18_costs_less():
    # parameters scale with width squared: a quarter of the width, about a sixteenth of the weights
    ratio = _params(build_backbone("resnet18w", 16)) / _params(build_backbone("resnet18", 64))
    assert 0.05 < ratio < 0.08


def test_narrow_resnet18_is_initialised_like_torchvision():
    m = build_backbone("resnet18w", 16)
    bn = m.layer2[0].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    w = m.layer3[0].conv1.weight  # kaiming normal, fan_out: std sqrt(2 / (out * 9))
    assert abs(w.std().item() - (2 / (w.shape[0] * 9)) ** 0.5) < 0.1 * (2 / (w.shape[0] * 9)) ** 0.5
