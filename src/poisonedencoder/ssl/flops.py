"""A stated FLOP count of the pre-training step, and the model FLOP utilisation (MFU) it gives.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward (and backward)
pass: the matrix products and convolutions, 2 FLOPs per multiply-add; normalisation, activations,
pooling, the loss's elementwise work and the optimizer step are not counted (the convention of
MFU). A backward pass costs what its gradients cost: twice the forward for a layer whose input
needs a gradient, once (the weight's gradient) for the first layer, whose input is the image.

MFU = achieved FLOP/s / the device's peak FLOP/s, the peak given explicitly: :data:`PEAK_TFLOPS`
(dense bf16 tensor-core peaks from the vendors' data sheets, by a name in
``torch.cuda.get_device_name``) or a number of the caller's.

A CIFAR ResNet18 (``resnet18``) forward pass on one 32x32 view is 555,417,600 multiply-adds
(1.11 GFLOP); a SimCLR step per pre-training input (two views, forward and backward, with the
``mlp`` projector) counts about 6.7 GFLOP.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# dense bf16 peak, TFLOP/s (no sparsity), by a name that torch.cuda.get_device_name contains;
# the first match wins, so the more specific names come first
PEAK_TFLOPS: dict[str, float] = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
}


def counted(fn: Callable[[], object]) -> int:
    """The FLOPs that ``fn()`` runs (matrix products and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def forward_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of ``module(x)`` (without gradients)."""
    with torch.no_grad():
        return counted(lambda: module(x))


def train_flops(loss: Callable[[], torch.Tensor]) -> int:
    """FLOPs of ``loss()`` and of its backward pass."""
    return counted(lambda: loss().backward())


def step_flops_per_image(p: dict, batch: int = 2) -> float:
    """FLOPs per pre-training input of one training step of the method and backbone of the
    ``pretrain`` settings ``p``: both views forward and backward, counted on ``batch`` random
    inputs at ``p["image_size"]`` and divided by ``batch``. All of it is linear in the batch but
    the loss's similarity matrix of the 2B projections (SimCLR: 3 x 2 (2B)^2 d FLOPs a step,
    24 B d per input, 0.02% of a ResNet18 step at B = 512 and d = 128)."""
    from .methods import build_method

    model = build_method(p).train()
    size = p["image_size"]
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.rand(batch, 3, size, size, generator=g) for _ in range(2))
    return train_flops(lambda: model.loss(x1, x2)) / batch


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by its name (:data:`PEAK_TFLOPS`), or None if not listed."""
    for name, peak in PEAK_TFLOPS.items():
        if name in device_name:
            return peak
    return None


def mfu(images_per_s: float, flops_per_image: float, peak_tflops_: float) -> float:
    """Model FLOP utilisation: the achieved FLOP/s over the peak (``peak_tflops_`` in TFLOP/s)."""
    if peak_tflops_ <= 0:
        raise ValueError(f"peak must be positive, got {peak_tflops_}")
    return images_per_s * flops_per_image / (peak_tflops_ * 1e12)
