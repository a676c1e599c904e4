"""What ``evaluate --arch`` can build: torchvision's ImageNet-style models, the toolkit's own
backbones (from their one registry) and timm's models, untrained, returning features."""
from __future__ import annotations

from torch import nn

from ..core.errors import UserError

TORCHVISION = ("resnet18", "resnet50")
"""torchvision's ImageNet-style models, ``fc`` replaced by Identity (a file's ``fc.*`` keys, a
classifier head, are left out)."""
TIMM = "timm:NAME"
"""``timm.create_model(NAME, num_classes=0)`` (needs timm)."""


def toolkit_archs() -> dict[str, str]:
    """The toolkit's backbones by ``--arch`` name: every entry of the one registry
    (:data:`poisonedencoder.ssl.models.BACKBONES`) under its own name, or ``NAME-cifar`` where a
    torchvision model of :data:`TORCHVISION` has that name (``resnet18-cifar``: the toolkit's
    ``resnet18``, CIFAR stem). Maps to the backbone's registry name."""
    from ..ssl.models import BACKBONES

    return {(f"{n}-cifar" if n in TORCHVISION else n): n for n in BACKBONES}


def arch_names() -> list[str]:
    """What ``--arch`` accepts: :data:`TORCHVISION`, :func:`toolkit_archs`, :data:`TIMM`."""
    return [*TORCHVISION, *toolkit_archs(), TIMM]


def build_arch(arch: str, width: int = 32) -> nn.Module:
    """The untrained architecture ``arch`` (:func:`arch_names`), returning features."""
    if arch in TORCHVISION:
        import torchvision

        m = getattr(torchvision.models, arch)(weights=None)
        m.fc = nn.Identity()
        return m
    toolkit = toolkit_archs()
    if arch in toolkit:  # the toolkit's backbones, from their registry
        from ..ssl.models import build_backbone

        return build_backbone(toolkit[arch], width)
    if arch.startswith("timm:") and len(arch) > 5:
        try:
            import timm
        except ImportError:
            raise UserError(f"--arch {arch} needs timm, which is not installed: pip install timm") from None
        try:
            return timm.create_model(arch[5:], pretrained=False, num_classes=0)
        except Exception as e:  # an unknown model name
            raise UserError(f"--arch {arch}: timm cannot build {arch[5:]!r} ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
    raise UserError(f"unknown --arch {arch!r}; choose one of {', '.join(arch_names())}")
