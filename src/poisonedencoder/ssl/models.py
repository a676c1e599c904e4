"""Backbones: the paper's CIFAR-style ResNet18 and a small 7-layer CNN for CPUs."""
from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CNN7(nn.Module):
    """Seven 3x3 conv-BN-ReLU layers (widths w, w, 2w, 2w, 4w, 4w, 8w), three 2x2 max-pools,
    global average pooling: an ``8w``-dimensional feature (256 for ``w=32``)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv(3, w), *_conv(w, w), nn.MaxPool2d(2),
            *_conv(w, 2 * w), *_conv(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv(2 * w, 4 * w), *_conv(4 * w, 4 * w), nn.MaxPool2d(2),
            *_conv(4 * w, 8 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.feature_dim = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def resnet18_cifar() -> nn.Module:
    """torchvision ResNet18 with the CIFAR stem (3x3 conv, stride 1, no max-pool); 512-d feature."""
    from torchvision.models import resnet18

    m = resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.fc = nn.Identity()
    m.feature_dim = 512
    return m


BACKBONES = ("cnn7", "resnet18")


def build_backbone(name: str, width: int = 32) -> nn.Module:
    if name == "cnn7":
        return CNN7(width)
    if name == "resnet18":
        return resnet18_cifar()
    from ..errors import UserError

    raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
