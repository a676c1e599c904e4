"""The pre-training loop: in-memory uint8 data, batched two-view augmentation, one
checkpoint per epoch (written atomically) and resume from the last one."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import UserError
from ..io import load_torch, save_torch
from .augment import AugmentParams, augment, normalize
from .simclr import SimCLR


class PretrainSet:
    """Unlabeled pre-training inputs held as uint8 tensors, one tensor per image shape.

    Clean images are ``(H, W)``; poisoning inputs may be ``(H, 2W)`` or ``(2H, W)``.
    A batch is drawn over all images; each shape group is cropped from its own tensor,
    so nothing is padded or squeezed and a poisoning input keeps its geometry.
    """

    def __init__(self, arrays: Sequence[np.ndarray]):
        groups: dict[tuple[int, int], list[np.ndarray]] = {}
        for a in arrays:
            if len(a) == 0:
                continue
            for img in (a if a.ndim == 4 else a[None]):
                groups.setdefault(img.shape[:2], []).append(img)
        self.shapes = list(groups)
        self.groups = [torch.from_numpy(np.stack(groups[s])).permute(0, 3, 1, 2).contiguous() for s in self.shapes]
        sizes = [len(g) for g in self.groups]
        self.offsets = np.cumsum([0] + sizes)
        self.size = int(self.offsets[-1])

    @classmethod
    def from_images(cls, clean: np.ndarray, poisons: Sequence[np.ndarray] = ()) -> "PretrainSet":
        return cls([clean] + [p[None] for p in poisons])

    def __len__(self) -> int:
        return self.size

    def views(self, index: torch.Tensor, params: AugmentParams, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented, normalized views of the images at ``index`` (same order in both)."""
        v1, v2 = [], []
        for gi, g in enumerate(self.groups):
            lo, hi = self.offsets[gi], self.offsets[gi + 1]
            sel = index[(index >= lo) & (index < hi)] - int(lo)
            if len(sel) == 0:
                continue
            imgs = g[sel]
            v1.append(augment(imgs, params, generator))
            v2.append(augment(imgs, params, generator))
        return normalize(torch.cat(v1)), normalize(torch.cat(v2))


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False)


def train_step(model: SimCLR, opt: torch.optim.Optimizer, x1: torch.Tensor, x2: torch.Tensor,
               device: str = "cpu", bf16: bool = False) -> torch.Tensor:
    """One optimizer step on two views: channels_last on ``device``, forward under bf16 autocast
    when asked (the loss itself stays fp32), backward, step. Returns the loss."""
    x1 = x1.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    x2 = x2.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model.loss(x1, x2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def pretrain(data: PretrainSet, p: dict, workdir: str | Path, seed: int = 0, device: str = "cpu",
             desc: str = "pretrain", log=print) -> SimCLR:
    """Train SimCLR on ``data`` with settings ``p`` (the config's ``pretrain`` section).

    ``workdir/checkpoint.pt`` is rewritten after every epoch and the run resumes from it;
    ``workdir/encoder.pt`` (backbone weights only) is written at the end, and with
    ``snapshot_every: k`` also ``workdir/snapshots/epoch_NNNNN.pt`` every k epochs.
    """
    workdir = Path(workdir)
    if p["batch_size"] > len(data):
        raise UserError(f"pretrain.batch_size {p['batch_size']} is larger than the pre-training set ({len(data)} inputs)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    if p.get("threads"):
        torch.set_num_threads(int(p["threads"]))
    torch.manual_seed(seed)
    model = SimCLR.from_config(p).to(device).to(memory_format=torch.channels_last)
    if p["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=0.9, weight_decay=p["weight_decay"])
    aug = AugmentParams.from_config(p)
    ckpt = workdir / "checkpoint.pt"
    start, history = 0, []
    if ckpt.exists():
        state = load_torch(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, history = int(state["epoch"]), list(state["loss"])
        log(f"{desc}: resuming after epoch {start}")
    steps = len(data) // p["batch_size"]
    for epoch in range(start, p["epochs"]):
        model.train()
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        perm = torch.randperm(len(data), generator=g)
        total, t0 = 0.0, time.time()
        with _bar(steps, f"{desc} {epoch + 1}/{p['epochs']}") as bar:
            for s in range(steps):
                idx = perm[s * p["batch_size"]:(s + 1) * p["batch_size"]]
                x1, x2 = data.views(idx, aug, g)
                loss = train_step(model, opt, x1, x2, device, p.get("precision") == "bf16")
                total += loss.item()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        history.append(total / max(steps, 1))
        save_torch(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                          "loss": history})
        every = p.get("snapshot_every") or 0
        if every and (epoch + 1) % every == 0 and epoch + 1 < p["epochs"]:
            save_torch(workdir / "snapshots" / f"epoch_{epoch + 1:05d}.pt", {"backbone": model.backbone.state_dict()})
        if (epoch + 1) % max(1, p["epochs"] // 10) == 0 or epoch + 1 == p["epochs"]:
            log(f"{desc}: epoch {epoch + 1}/{p['epochs']} loss {history[-1]:.4f} ({time.time() - t0:.1f}s)")
    save_torch(workdir / "encoder.pt", {"backbone": model.backbone.state_dict(), "loss": history})
    return model


def load_backbone(path: str | Path, p: dict) -> torch.nn.Module:
    model = SimCLR.from_config(p)
    state = load_torch(path)
    model.backbone.load_state_dict(state["backbone"])
    return model.backbone
