"""The stated FLOP count and MFU: exact against hand arithmetic."""
import pytest
import torch
from torch import nn

from poisonedencoder import config as C
from poisonedencoder.ssl import flops as F
from poisonedencoder.ssl.models import build_backbone


def _tiny():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 5, bias=False))


def test_a_conv_and_a_linear_layer_count_by_hand():
    m, x = _tiny(), torch.rand(1, 3, 8, 8)
    conv = 2 * (4 * 8 * 8) * (3 * 3 * 3)  # 2 FLOPs per multiply-add, per output element
    linear = 2 * 256 * 5
    assert F.forward_flops(m, x) == conv + linear
    # backward: the linear layer's input and weight gradients (one forward each), the conv's weight
    # gradient only (the image needs none)
    assert F.train_flops(lambda: m(x).sum()) == (conv + linear) + 2 * linear + conv
    assert F.forward_flops(m, torch.rand(3, 3, 8, 8)) == 3 * (conv + linear)


def _resnet18_macs_32() -> int:
    """Multiply-adds of the CIFAR ResNet18 on one 32x32 view, layer by layer."""
    stem = 32 * 32 * 64 * 27
    stage1 = 4 * 32 * 32 * 64 * 64 * 9
    later = 0
    for side, cin, cout in ((16, 64, 128), (8, 128, 256), (4, 256, 512)):
        later += side * side * cout * (cin * 9 + 3 * cout * 9 + cin)  # first conv, three more, 1x1 shortcut
    return stem + stage1 + later


def test_the_cifar_resnet18_forward_is_0_56_gmac_per_view():
    macs = _resnet18_macs_32()
    assert macs == 555_417_600
    assert F.forward_flops(build_backbone("resnet18", 64), torch.rand(1, 3, 32, 32)) == 2 * macs


def test_a_simclr_resnet18_step_counts_both_views_forward_and_backward():
    p = C.resolve({"preset": "paper"})["pretrain"]
    d, b = 512, 2
    forward = 2 * _resnet18_macs_32() + 2 * (d * d + d * p["projection_dim"])  # backbone, mlp projector
    stem_input_grad = 2 * 32 * 32 * 64 * 27  # not computed: the image needs no gradient
    loss = 3 * 2 * (2 * b) ** 2 * p["projection_dim"] // b  # the similarity matrix, per input
    assert F.step_flops_per_image(p, batch=b) == 2 * (3 * forward - stem_input_grad) + loss
    assert 6.6e9 < F.step_flops_per_image(p, batch=b) < 6.7e9


def test_mfu_is_achieved_over_peak():
    assert F.mfu(26_000, 6.66e9, 989.0) == pytest.approx(26_000 * 6.66e9 / 989e12, rel=1e-12)
    assert F.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0 and F.peak_tflops("NVIDIA H200") == 989.0
    assert F.peak_tflops("NVIDIA H100 PCIe") == 756.0 and F.peak_tflops("cpu") is None
    with pytest.raises(ValueError):
        F.mfu(1.0, 1.0, 0.0)
