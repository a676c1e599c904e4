"""SimCLR augmentation applied to a whole batch, with random parameters drawn per image.

``torchvision.transforms.v2`` applied to a batch tensor draws *one* parameter set for
the whole batch, which is wrong for contrastive learning; this module draws crop box,
flip, jitter factors and grayscale per image and applies them with tensor ops:

* RandomResizedCrop: torchvision's sampling rule (10 tries of area scale and log-uniform
  aspect ratio, then a centre-crop fallback), executed by ``torchvision.ops.roi_align``
  (bilinear; adaptive sampling averages several points per output pixel when shrinking, an antialias). Images of any height and width work, so a
  poisoning input keeps its side-by-side geometry and is cropped like any other image.
* horizontal flip, color jitter (brightness, contrast, saturation, hue; applied with
  probability ``jitter_p`` in one random order per batch), grayscale with ``gray_p``.
  Hue is rotated in the YIQ chroma plane, a close, cheap stand-in for HSV hue shift.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align

# CIFAR-10's per-channel mean and std: the input statistics of encoders saved before each encoder
# stored its own (see models.InputNorm)
MEAN = torch.tensor([0.4914, 0.4822, 0.4465])
STD = torch.tensor([0.2470, 0.2435, 0.2616])
_GRAY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


@dataclass
class AugmentParams:
    size: int = 32
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2

    @classmethod
    def from_config(cls, p: dict) -> "AugmentParams":
        return cls(size=p["image_size"], crop_scale=tuple(p["crop_scale"]), flip_p=p["flip_p"],
                   jitter=tuple(p["jitter"]), jitter_p=p["jitter_p"], gray_p=p["gray_p"])


def _rand(n: int, g: torch.Generator | None, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def sample_crop_boxes(n: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                      generator: torch.Generator | None = None, tries: int = 10) -> torch.Tensor:
    """Boxes ``(n, 4)`` as ``x0, y0, x1, y1`` in pixels, following RandomResizedCrop.get_params."""
    area = height * width
    s = _rand(n * tries, generator, *scale).view(n, tries) * area
    logr = _rand(n * tries, generator, math.log(ratio[0]), math.log(ratio[1])).view(n, tries)
    r = torch.exp(logr)
    w = torch.round(torch.sqrt(s * r))
    h = torch.round(torch.sqrt(s / r))
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    idx = first.clamp(min=0).unsqueeze(1)
    w = w.gather(1, idx).squeeze(1)
    h = h.gather(1, idx).squeeze(1)
    # fallback: centre crop with the aspect ratio clamped into range
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fh, fw = float(height), round(height * ratio[1])
    else:
        fw, fh = float(width), float(height)
    fb = first < 0
    w = torch.where(fb, torch.full_like(w, fw), w)
    h = torch.where(fb, torch.full_like(h, fh), h)
    u = torch.rand(n, 2, generator=generator)
    x0 = torch.floor(u[:, 0] * (width - w + 1))
    y0 = torch.floor(u[:, 1] * (height - h + 1))
    x0 = torch.where(fb, torch.round((width - w) / 2), x0)
    y0 = torch.where(fb, torch.round((height - h) / 2), y0)
    return torch.stack([x0, y0, x0 + w, y0 + h], 1)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each float image ``(N, C, H, W)`` to its box and resize to ``size`` x ``size``."""
    rois = torch.cat([torch.arange(len(images), dtype=images.dtype, device=images.device).unsqueeze(1), boxes.to(images.dtype)], 1)
    return roi_align(images, rois, output_size=size, spatial_scale=1.0, sampling_ratio=0, aligned=True)


def _blend(a: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """f*a + (1-f)*b per image, clamped to [0, 1] (torchvision's _blend)."""
    return (f.view(-1, 1, 1, 1) * a + (1 - f.view(-1, 1, 1, 1)) * b).clamp_(0, 1)


_ON_DEVICE: dict[tuple, torch.Tensor] = {}


def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The constant ``t`` on ``x``'s device and dtype, copied there once (a copy from pageable
    memory per step would make the host wait for the GPU)."""
    key = (id(t), x.device, x.dtype)
    if key not in _ON_DEVICE:
        _ON_DEVICE[key] = t.to(x)
    return _ON_DEVICE[key]


def grayscale(x: torch.Tensor) -> torch.Tensor:
    return (x * _like(_GRAY, x)).sum(1, keepdim=True)


def color_jitter(x: torch.Tensor, b: torch.Tensor, c: torch.Tensor, s: torch.Tensor, h: torch.Tensor,
                 order: list[int]) -> torch.Tensor:
    """Apply per-image brightness ``b``, contrast ``c``, saturation ``s`` factors and hue shift ``h``."""
    for op in order:
        if op == 0:
            x = (x * b.view(-1, 1, 1, 1)).clamp_(0, 1)
        elif op == 1:
            m = grayscale(x).mean((1, 2, 3), keepdim=True)
            x = _blend(x, m.expand_as(x), c)
        elif op == 2:
            x = _blend(x, grayscale(x).expand_as(x), s)
        else:
            theta = h * 2 * math.pi
            cos, sin = torch.cos(theta), torch.sin(theta)
            n = len(x)
            rot = torch.zeros(n, 3, 3, dtype=x.dtype, device=x.device)
            rot[:, 0, 0] = 1
            rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
            m = _like(_YIQ2RGB, x) @ rot @ _like(_RGB2YIQ, x)  # (n, 3, 3)
            x = torch.einsum("nij,njhw->nihw", m, x).clamp_(0, 1)
    return x


@dataclass
class ViewParams:
    """The random parameters of one view of ``n`` images: crop boxes, flips, jitter factors
    (identity where jitter is off for an image), the jitter order, grayscale."""
    boxes: torch.Tensor
    flip: torch.Tensor
    bright: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    order: list[int] | None
    gray: torch.Tensor

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, index: torch.Tensor) -> "ViewParams":
        """The parameters of the images at ``index`` (for one rank's share of a global batch)."""
        return ViewParams(self.boxes[index], self.flip[index], self.bright[index], self.contrast[index],
                          self.saturation[index], self.hue[index], self.order, self.gray[index])

    def to(self, device) -> "ViewParams":
        t = [x.to(device, non_blocking=True) for x in (self.boxes, self.flip, self.bright, self.contrast,
                                                         self.saturation, self.hue)]
        return ViewParams(*t, self.order, self.gray.to(device, non_blocking=True))


def box_overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row, the area shared by boxes ``a`` and ``b`` (``x0, y0, x1, y1``) over the smaller box's area."""
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return iw * ih / torch.minimum(area(a), area(b)).clamp(min=1e-9)


def overlapping_boxes(first: torch.Tensor, height: int, width: int, p: AugmentParams,
                      generator: torch.Generator | None = None, tries: int = 20, *, min_overlap: float) -> torch.Tensor:
    """Crop boxes for a second view that share at least ``min_overlap`` of the smaller crop with
    ``first`` (redrawn by ``p``'s rule until they do; after ``tries`` rounds, the first box). The
    view policy of the defense ``overlapping_views``."""
    boxes = sample_crop_boxes(len(first), height, width, p.crop_scale, p.crop_ratio, generator)
    for _ in range(tries):
        bad = box_overlap(first, boxes) < min_overlap
        if not bad.any():
            return boxes
        boxes[bad] = sample_crop_boxes(int(bad.sum()), height, width, p.crop_scale, p.crop_ratio, generator)
    bad = box_overlap(first, boxes) < min_overlap
    boxes[bad] = first[bad]
    return boxes


def sample_view_params(n: int, height: int, width: int, p: AugmentParams,
                       generator: torch.Generator | None = None) -> ViewParams:
    """Draw the parameters of one view of ``n`` images of size ``height`` x ``width`` (on the CPU)."""
    boxes = sample_crop_boxes(n, height, width, p.crop_scale, p.crop_ratio, generator)
    flip = torch.rand(n, generator=generator) < p.flip_p
    bj, cj, sj, hj = p.jitter
    b, c, s, h, order = torch.ones(n), torch.ones(n), torch.ones(n), torch.zeros(n), None
    if p.jitter_p > 0 and any(v > 0 for v in p.jitter):
        on = (torch.rand(n, generator=generator) < p.jitter_p).float()
        if bj:
            b = 1 + on * _rand(n, generator, -bj, bj)
        if cj:
            c = 1 + on * _rand(n, generator, -cj, cj)
        if sj:
            s = 1 + on * _rand(n, generator, -sj, sj)
        if hj:
            h = on * _rand(n, generator, -hj, hj)
        order = torch.randperm(4, generator=generator).tolist()
    gray = torch.rand(n, generator=generator) < p.gray_p if p.gray_p > 0 else torch.zeros(n, dtype=torch.bool)
    return ViewParams(boxes, flip, b, c, s, h, order, gray)


def apply_views(images: torch.Tensor, views: list[ViewParams], size: int) -> list[torch.Tensor]:
    """Apply several views' parameters to the same uint8 (or float, in [0, 1]) images ``(N, C, H, W)``,
    on the images' device (CPU or GPU): one float ``(N, 3, size, size)`` tensor in [0, 1] per view.

    All views' parameters travel to the device in one copy and are cropped by one ``roi_align``
    call (its box indices point every view at the same images, so nothing is duplicated);
    only color jitter runs per view, as its random order of operations is drawn per view."""
    n, dev = len(images), images.device
    packed = torch.cat([torch.cat([v.boxes, torch.stack([v.flip.float(), v.bright, v.contrast, v.saturation, v.hue,
                                                           v.gray.float()], 1)], 1) for v in views])
    if dev.type == "cuda":
        packed = packed.pin_memory().to(dev, non_blocking=True)
    # uint8 images, or float images in [0, 1] (differentiable: Witches' Brew optimises through this)
    x = images.float().div_(255) if images.dtype == torch.uint8 else images
    idx = torch.arange(n, dtype=x.dtype, device=dev).repeat(len(views)).unsqueeze(1)
    x = roi_align(x, torch.cat([idx, packed[:, :4].to(x.dtype)], 1), output_size=size, spatial_scale=1.0,
                  sampling_ratio=0, aligned=True)
    x = torch.where(packed[:, 4].bool().view(-1, 1, 1, 1), x.flip(-1), x)
    out = list(x.split(n))
    for i, v in enumerate(views):
        if v.order is not None:
            q = packed[i * n:(i + 1) * n]
            out[i] = color_jitter(out[i], q[:, 5], q[:, 6], q[:, 7], q[:, 8], v.order)
    gray = packed[:, 9].bool().split(n)
    return [torch.where(g.view(-1, 1, 1, 1), grayscale(o).expand_as(o), o)
            for o, g in zip(out, gray, strict=True)]


def apply_view(images: torch.Tensor, v: ViewParams, size: int) -> torch.Tensor:
    """Apply one view's parameters to uint8 images ``(N, C, H, W)`` on their own device (CPU or GPU):
    float ``(N, 3, size, size)`` in [0, 1]."""
    return apply_views(images, [v], size)[0]


def augment(images: torch.Tensor, p: AugmentParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random view of each uint8 image ``(N, C, H, W)``: float ``(N, 3, size, size)`` in [0, 1]."""
    n, _, hgt, wid = images.shape
    return apply_view(images, sample_view_params(n, hgt, wid, p, generator), p.size)


def per_sample_transform(p: AugmentParams):
    """The per-sample PIL pipeline of most SSL repositories (torchvision ``transforms``), with the
    same settings: ``pretrain.augmentation: per_sample``, and the pipeline that the batched
    augmentation is checked against."""
    import torchvision.transforms as T

    return T.Compose([T.RandomResizedCrop(p.size, scale=p.crop_scale, ratio=p.crop_ratio),
                      T.RandomHorizontalFlip(p.flip_p), T.RandomApply([T.ColorJitter(*p.jitter)], p=p.jitter_p),
                      T.RandomGrayscale(p.gray_p), T.ToTensor()])


def per_sample_views(images: torch.Tensor, p: AugmentParams, transform=None) -> torch.Tensor:
    """One view of each uint8 image ``(N, C, H, W)`` by :func:`per_sample_transform`, image by image
    through PIL (random parameters from torch's global generator, as in torchvision): float
    ``(N, 3, size, size)`` in [0, 1] on the images' device."""
    from PIL import Image

    tf = transform or per_sample_transform(p)
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    return torch.stack([tf(Image.fromarray(a)) for a in arr]).to(images.device)


def normalize(x: torch.Tensor, mean: torch.Tensor = MEAN, std: torch.Tensor = STD) -> torch.Tensor:
    """``(x - mean) / std`` per channel (by default CIFAR-10's statistics). The backbones normalize
    their input themselves, with the statistics of their pre-training set (``models.InputNorm``)."""
    return (x - mean.to(x).view(1, -1, 1, 1)) / std.to(x).view(1, -1, 1, 1)


def to_input(images_uint8_nhwc, size: int | None = None) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` array -> float ``(N, 3, H, W)`` in [0, 1], resized to ``size``, for
    evaluation (the backbone normalizes it with its own statistics)."""
    x = torch.as_tensor(images_uint8_nhwc).permute(0, 3, 1, 2).float().div_(255)
    if size is not None and x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x
