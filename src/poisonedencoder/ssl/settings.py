"""The ``pretrain`` section's shared keys: the pre-training loop's (:mod:`.pretrain`), the
augmentation's (:mod:`.augment`) and the architecture every method builds (:mod:`.methods.base`).
Each method's own keys are its section ``pretrain.<name>`` (the method's ``Settings``)."""
from __future__ import annotations

from typing import Annotated, Optional, Union

from pydantic import Field

from ..core.errors import UserError
from ..core.errors import preview as _preview
from ..core.settings import AutoOr, Number, Range, Settings


def choice(value: str, key: str, choices, registry: bool = False) -> None:
    """``key`` is one of ``choices`` (``registry``: the names of a registry)."""
    if value not in choices:
        name = key.rsplit(".", 1)[-1]
        if registry:
            raise UserError(f"{key}: unknown {name} {_preview(value)}; choose one of {', '.join(choices)}")
        raise UserError(f"{key} must be one of {', '.join(choices)}, got {_preview(value)}")


def check_crop_scale(cs: list, key: str) -> None:
    """``key`` (a crop's area fraction, RandomResizedCrop's ``scale``) is ``[min, max]`` with ``0 < min <= max <= 1``."""
    if not (len(cs) == 2 and 0 < cs[0] <= cs[1] <= 1):
        raise UserError(f"{key} must be [min, max] with 0 < min <= max <= 1, got {_preview(cs)}")


class PretrainSettings(Settings):
    """How an encoder is pre-trained: the method, the backbone, the optimisation and the run."""

    algorithm: str = Field("simclr", description="{methods}")
    backbone: str = Field("cnn7", description="{backbones} (resnet18: CIFAR stem, the paper's widths; resnet18w: the same at pretrain.width)")
    width: Annotated[int, Range(1, 4096)] = Field(32, description="cnn7 base width; resnet18w first-stage channels (both: feature = 8 * width; resnet18 ignores it)")
    image_size: Annotated[int, Range(8, 1024)] = Field(32, description="every dataset is resized to this once, when decoded")
    epochs: Annotated[int, Range(0, 100000)] = 40
    batch_size: Annotated[int, Range(2, 1 << 20)] = 256
    optimizer: str = Field("adam", description="adam | sgd")
    lr: Annotated[Number, Range(0, 100)] = 1e-3
    weight_decay: Annotated[Number, Range(0, 1)] = 1e-6
    temperature: Annotated[Number, Range(1e-6, 100)] = 0.5
    projection_dim: Annotated[int, Range(1, 65536)] = 128
    projector: str = Field("mlp", description="mlp (SimCLR's head) | linear | none")
    precision: str = Field("auto", description="auto | bf16 | fp32. bf16: autocast forward pass, fp32 loss. auto: bf16 on\n"
                           "CUDA with bf16 and on CPUs with avx512_bf16 or amx_bf16, else fp32; the\n"
                           "run log and encoder.pt say which. bf16 on a CPU without them warns: ~8x slower")
    compile: Union[bool, AutoOr] = Field("auto", description="auto | true | false: torch.compile the training step. auto: on CUDA, off on\n"
                                      "the CPU (where it needs a C++ compiler); the run log and encoder.pt say which")
    memory_format: str = Field("auto", description="auto | channels_last | contiguous: the model's and the views' memory format.\n"
                               "auto: channels_last (on CUDA and on the CPU); the run log and encoder.pt say which")
    threads: Optional[int] = Field(None, description="torch CPU threads")
    snapshot_every: Annotated[int, Range(0, 100000)] = Field(0, description="keep the poisoned backbone every k epochs: ASR over training")
    checkpoint_every: Annotated[int, Range(1, 100000)] = Field(1, description="write the resumable checkpoint every k epochs and after the last (a resumed run loses at most k-1)")

    def check(self, where: str) -> None:
        from .methods import METHODS
        from .models import BACKBONES

        choice(self.algorithm, f"{where}.algorithm", tuple(METHODS), registry=True)
        choice(self.backbone, f"{where}.backbone", tuple(BACKBONES), registry=True)
        choice(self.projector, f"{where}.projector", ("mlp", "linear", "none"))
        choice(self.precision, f"{where}.precision", ("auto", "bf16", "fp32"))
        choice(self.optimizer, f"{where}.optimizer", ("adam", "sgd"))
        choice(self.memory_format, f"{where}.memory_format", ("auto", "channels_last", "contiguous"))


class AugmentSettings(Settings):
    """SimCLR's augmentation of both views (:mod:`.augment`)."""

    crop_scale: list[Number] = [0.08, 1.0]
    flip_p: Annotated[Number, Range(0, 1)] = 0.5
    jitter: list[Number] = [0.4, 0.4, 0.4, 0.1]
    jitter_p: Annotated[Number, Range(0, 1)] = 0.8
    gray_p: Annotated[Number, Range(0, 1)] = 0.2
    augmentation: str = Field("batched", description="batched (per-image parameters, tensor ops, on the device) | per_sample\n"
                              "(torchvision's per-sample PIL pipeline, image by image; one process; not\n"
                              "with defense overlapping_views; slower; for checking the batched one, see BENCHMARKS.md)")

    def check(self, where: str) -> None:
        check_crop_scale(self.crop_scale, f"{where}.crop_scale")
        j = self.jitter
        if not (len(j) == 4 and all(x >= 0 for x in j) and j[3] <= 0.5):
            raise UserError(f"{where}.jitter must be [brightness, contrast, saturation, hue] >= 0 with hue <= 0.5, got {_preview(j)}")
        if self.augmentation == "reference":
            raise UserError(f"{where}.augmentation must be batched or per_sample, got 'reference' (renamed per_sample)")
        choice(self.augmentation, f"{where}.augmentation", ("batched", "per_sample"))


def pretrain_defaults() -> dict:
    """The ``pretrain`` section's shared keys and their defaults, in docs/CONFIG.md's order."""
    p, a = PretrainSettings.defaults(), AugmentSettings.defaults()
    head = ("algorithm", "backbone", "width", "image_size", "epochs", "batch_size", "optimizer", "lr",
            "weight_decay", "temperature", "projection_dim", "projector")
    return {**{k: p[k] for k in head}, **a, **{k: v for k, v in p.items() if k not in head}}
