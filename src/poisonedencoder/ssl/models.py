"""Backbones: the paper's CIFAR-style ResNet18 and a small 7-layer CNN for CPUs.

Each backbone takes images in [0, 1] and normalizes them itself with per-channel statistics
it keeps as buffers (``input_mean``, ``input_std``): those of its pre-training set, set by the
pre-training loop and saved with its weights, so feature extraction uses what training used."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from .augment import MEAN as CIFAR10_MEAN
from .augment import STD as CIFAR10_STD


class InputNorm(nn.Module):
    """Input normalization by the buffers ``input_mean`` and ``input_std`` (3 values each).

    A state dict without them (encoders saved before they existed) loads with CIFAR-10's
    statistics, which is what every encoder was trained with then."""

    def _init_input_norm(self) -> None:
        self.register_buffer("input_mean", CIFAR10_MEAN.clone())
        self.register_buffer("input_std", CIFAR10_STD.clone())

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean.to(x.dtype).view(1, -1, 1, 1)) / self.input_std.to(x.dtype).view(1, -1, 1, 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key, default in (("input_mean", CIFAR10_MEAN), ("input_std", CIFAR10_STD)):
            if prefix + key not in state_dict:
                state_dict[prefix + key] = default.clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@torch.no_grad()
def set_input_stats(module: nn.Module, mean, std) -> None:
    """Set the input statistics of every backbone in ``module`` (momentum copies included)."""
    mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
    for m in module.modules():
        if isinstance(m, InputNorm):
            m.input_mean.copy_(mean)
            m.input_std.copy_(std)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CNN7(InputNorm):
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
        self._init_input_norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize_input(x))


class CifarResNet18(InputNorm, ResNet):
    """torchvision ResNet18 with the CIFAR stem (3x3 conv, stride 1, no max-pool).

    ``width`` is the first stage's channels (stages w, 2w, 4w, 8w; feature 8w): 64 is the
    paper's ResNet18 (512-d feature, 11.2M parameters), 16 a sixteenth of its compute."""

    def __init__(self, width: int = 64):
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=10)
        w = width
        if w != 64:  # rebuild the stages at this width (torchvision fixes 64-128-256-512)
            self.inplanes = w
            self.bn1 = nn.BatchNorm2d(w)
            self.layer1 = self._make_layer(BasicBlock, w, 2)
            self.layer2 = self._make_layer(BasicBlock, 2 * w, 2, stride=2)
            self.layer3 = self._make_layer(BasicBlock, 4 * w, 2, stride=2)
            self.layer4 = self._make_layer(BasicBlock, 8 * w, 2, stride=2)
        self.conv1 = nn.Conv2d(3, w, 3, 1, 1, bias=False)
        if w != 64:  # torchvision's initialisation, as the 64-wide layers got it
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
        self.maxpool = nn.Identity()
        self.fc = nn.Identity()
        self.feature_dim = 8 * w
        self._init_input_norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.normalize_input(x))


def resnet18_cifar(_width: int = 64) -> nn.Module:
    """The paper's ResNet18 (widths 64-512); ``width`` is ignored (``ignores_width``)."""
    return CifarResNet18()


resnet18_cifar.ignores_width = True

BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    "cnn7": CNN7,                # width: the base width
    "resnet18": resnet18_cifar,  # the paper's widths (64-512), pretrain.width ignored
    "resnet18w": CifarResNet18,  # width: the first stage's channels (64 = resnet18)
}
"""Backbones by name (``pretrain.backbone``), each built from ``pretrain.width`` (a builder with
``ignores_width = True`` has fixed widths). The one list of the toolkit's backbones: training builds
them from it, and ``evaluate --arch`` (:mod:`poisonedencoder.experiment.external`) loads their state_dicts by
it. Adding one: a class and a line here."""


def uses_width(name: str) -> bool:
    """Whether the backbone ``name`` is built at the width it is given."""
    return not getattr(BACKBONES[name], "ignores_width", False)


MAX_PARAMETERS = 1_000_000_000
"""The most parameters a backbone built at a width may have (4 GB as float32; the paper's ResNet18
has 11 million): ``--width 100000`` would otherwise try to allocate hundreds of GB.
:data:`MAX_PARAMETERS_ENV` raises (or lowers) it."""
MAX_PARAMETERS_ENV = "POISONEDENCODER_MAX_PARAMETERS"


def build_backbone(name: str, width: int = 32) -> nn.Module:
    """The backbone ``name`` at ``width`` (:func:`check_width` first, where the width is used)."""
    from ..core.errors import UserError

    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if uses_width(name):
        check_width(name, width)
    return BACKBONES[name](width)


def check_width(name: str, width) -> None:
    """A :class:`UserError` unless ``width`` is a positive whole number at which the backbone ``name``
    has at most :data:`MAX_PARAMETERS` parameters (counted on the ``meta`` device: nothing allocated)."""
    from ..core.errors import UserError, bound_from_env, is_integer

    if not is_integer(width) or width < 1:
        raise UserError(f"backbone {name} at width {width!r}: the width must be a positive whole number")
    limit = bound_from_env(MAX_PARAMETERS_ENV, MAX_PARAMETERS)
    with torch.device("meta"):
        n = sum(p.numel() for p in BACKBONES[name](width).parameters())
    if n > limit:
        raise UserError(f"backbone {name} at width {width} would have {n:,} parameters ({4 * n / 1e9:,.1f} GB as float32), "
                        f"more than the {limit:,} accepted; {MAX_PARAMETERS_ENV}=N raises the bound")
