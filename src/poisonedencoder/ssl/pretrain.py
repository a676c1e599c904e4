"""The pre-training loop: in-memory uint8 data (:mod:`.pretrain_set`), batched two-view
augmentation, one step per batch (:mod:`.step`), one checkpoint per epoch (written atomically)
and resume from the last one."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ..core.errors import UserError, preview
from ..core.torch_files import load_torch, save_torch
from . import distributed as D
from . import speedups
from .augment import AugmentParams
from .hooks import PairFilter, ViewPolicy, hook_name, views_record
from .methods import METHODS, SSLMethod, build_method
from .models import set_input_stats
from .precision import describe, resolve_precision, stderr_warning
from .pretrain_set import PretrainSet
from .step import _ContrastiveStep, train_step

PROGRESS_SECONDS = 30.0  # without a terminal (output to a log), a progress line at least this often
_clock = time.monotonic  # replaced by a fake clock in tests


def _bar(total: int, desc: str, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not (enabled and sys.stderr.isatty()), leave=False)



def check_device(device: str) -> None:
    """A clear error for a device this machine cannot use."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {preview(device)}; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {preview(device)}; use cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {device!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")


def pretrain(data: PretrainSet, p: dict, workdir: str | Path, seed: int = 0, device: str = "cpu",
             desc: str = "pretrain", log=print, init: str | Path | None = None,
             view_policy: ViewPolicy | None = None, pair_filter: PairFilter | None = None) -> SSLMethod:
    """Pre-train ``p["algorithm"]`` on ``data`` with settings ``p`` (the config's ``pretrain`` section).

    ``view_policy`` and ``pair_filter``: an in-training defense's hooks (:mod:`.hooks`): how the
    second view's crop follows the first's, and which positive pairs enter the loss.

    ``workdir/checkpoint.pt`` is rewritten after every ``checkpoint_every``-th epoch (and the last)
    and the run resumes from it;
    ``workdir/encoder.pt`` (backbone weights only) is written at the end, and with
    ``snapshot_every: k`` also ``workdir/snapshots/epoch_NNNNN.pt`` every k epochs. ``init``: a
    checkpoint whose model weights start the run (fine-tuning), unless ``workdir`` has its own.

    Under ``torchrun`` (see :mod:`.distributed`) each rank trains on its share of every global
    batch with DistributedDataParallel and global batch norm; rank 0 alone logs, shows progress
    and writes files, and ``workdir`` must be on storage that all ranks see.
    """
    workdir = Path(workdir)
    env = D.current()
    t_call = time.time()
    if p["batch_size"] > len(data):
        raise UserError(f"pretrain.batch_size {p['batch_size']} is larger than the pre-training set ({len(data)} inputs)")
    if p["batch_size"] % env.world_size:
        raise UserError(f"pretrain.batch_size {p['batch_size']} does not split over {env.world_size} processes; "
                        f"use a multiple of {env.world_size}")
    check_device(device)
    per_sample = p.get("augmentation") == "per_sample"
    if per_sample and env.active:
        raise UserError("pretrain.augmentation: per_sample (the per-sample torchvision pipeline) runs in one process only")
    check_hooks(p, view_policy, pair_filter)
    precision = resolve_precision(p.get("precision", "auto"), device, warn=stderr_warning if env.is_main else None)
    compiled = speedups.resolve_compile(p.get("compile", "auto"), device)
    layout = speedups.resolve_memory_format(p.get("memory_format", "auto"))
    fmt = speedups.torch_format(layout)
    if p.get("threads"):
        torch.set_num_threads(int(p["threads"]))
    if not env.is_main:
        log = lambda *_: None  # noqa: E731
    torch.manual_seed(seed)
    model = build_method(p)
    set_input_stats(model, data.mean, data.std)  # a checkpoint or ``init`` loaded below brings its own
    if env.active:
        model = D.convert_batchnorm(model, device)
    model = model.to(device).to(memory_format=fmt)
    trained = [q for q in model.parameters() if q.requires_grad]  # not momentum (EMA) networks
    if p["optimizer"] == "adam":
        opt = torch.optim.Adam(trained, lr=p["lr"], weight_decay=p["weight_decay"])
    else:
        opt = torch.optim.SGD(trained, lr=p["lr"], momentum=0.9, weight_decay=p["weight_decay"])
    aug = AugmentParams.from_config(p)
    ckpt = workdir / "checkpoint.pt"
    start, history, before = 0, [], 0.0  # before: training seconds of earlier calls, up to their last checkpoint
    if ckpt.exists():
        state = load_torch(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, history = int(state["epoch"]), list(state["loss"])
        before = float(state["seconds"]) if "seconds" in state else None  # None: a checkpoint of an older version
        log(f"{desc}: resuming after epoch {start}")
    elif init is not None:
        model.load_state_dict(load_torch(init)["model"])
    if env.active:
        if D.mean_over_ranks(float(start)) != start:
            raise UserError(f"ranks disagree on the checkpoint in {workdir}: put the run directory and cache "
                            "on storage that every node sees")
        from torch.nn.parallel import DistributedDataParallel as DDP

        step_model: torch.nn.Module = DDP(_ContrastiveStep(model, pair_filter), device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    else:
        step_model = model
    if compiled:
        step_model = torch.compile(step_model if env.active else _ContrastiveStep(model, pair_filter))
    data = data.to(device)
    bf16 = precision == "bf16"
    steps = len(data) // p["batch_size"]
    if start < p["epochs"]:
        log(f"{desc}: precision {describe(p.get('precision', 'auto'), device)}, "
            f"{speedups.describe(p.get('compile', 'auto'), p.get('memory_format', 'auto'), device)}, augmentation "
            f"{'per_sample' if per_sample else 'batched'}, input mean {_fmt3(model.backbone.input_mean)} "
            f"std {_fmt3(model.backbone.input_std)}")
    t_start, last_line = _clock(), _clock()
    for epoch in range(start, p["epochs"]):
        model.train()
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        if per_sample:
            torch.manual_seed(seed * 100003 + epoch)  # torchvision draws from the global generator
        perm = torch.randperm(len(data), generator=g)
        total, t0 = torch.zeros((), device=device), time.time()
        with _bar(steps, f"{desc} {epoch + 1}/{p['epochs']}", env.is_main) as bar:
            for s in range(steps):
                idx = perm[s * p["batch_size"]:(s + 1) * p["batch_size"]]
                x1, x2 = data.views(idx, aug, g, env.rank, env.world_size, per_sample, view_policy)
                loss = train_step(step_model, opt, x1, x2, device, bf16, pair_filter, fmt)
                model.after_step((epoch * steps + s + 1) / (p["epochs"] * steps))
                total += loss.detach()
                if not bar.disable:  # .item() waits for the device: only when someone watches
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                elif env.is_main and _clock() - last_line >= PROGRESS_SECONDS:  # no terminal: lines for a log
                    last_line = _clock()
                    done = epoch - start + (s + 1) / steps  # epochs done in this call
                    per_epoch = (last_line - t_start) / done
                    left = per_epoch * (p["epochs"] - epoch - (s + 1) / steps)
                    log(f"{desc}: step {s + 1}/{steps} of epoch {epoch + 1} of {p['epochs']}, loss {loss.item():.4f}, "
                        f"{per_epoch:.1f}s per epoch, about {_duration(left)} left")
        # the epoch's mean loss stays on the device until it is read (a log line, a checkpoint, the
        # end): reading it every epoch would make the host wait for the GPU once per epoch
        history.append(total if not env.active else D.mean_over_ranks(float(total) / max(steps, 1)))
        every = p.get("snapshot_every") or 0
        if env.is_main and ((epoch + 1) % max(1, p.get("checkpoint_every") or 1) == 0 or epoch + 1 == p["epochs"]):
            history = _floats(history, steps)
            save_torch(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                              "loss": history, "seconds": (before or 0.0) + time.time() - t_call})
        if env.is_main and every and (epoch + 1) % every == 0 and epoch + 1 < p["epochs"]:
            save_torch(workdir / "snapshots" / f"epoch_{epoch + 1:05d}.pt", {"backbone": model.backbone.state_dict()})
        if (epoch + 1) % max(1, p["epochs"] // 10) == 0 or epoch + 1 == p["epochs"]:
            history = _floats(history, steps)
            log(f"{desc}: epoch {epoch + 1}/{p['epochs']} loss {history[-1]:.4f} ({time.time() - t0:.1f}s)")
    history = _floats(history, steps)
    if env.is_main:
        save_torch(workdir / "encoder.pt", {"backbone": model.backbone.state_dict(), "loss": history,
                                            "precision": precision, "compile": compiled, "memory_format": layout,
                                            "augmentation": "per_sample" if per_sample else "batched",
                                            # what the views were (an in-training defense changes them)
                                            "views": views_record(p, view_policy, pair_filter)})
    D.barrier()
    model.timing = {"resumed_after_epoch": start, "seconds_before": before, "seconds_this_call": time.time() - t_call}
    return model


def _floats(history: list, steps: int) -> list[float]:
    """The per-epoch mean losses as floats: an epoch's summed loss still on the device (a tensor)
    is read back, with the others, in one go and divided by ``steps``."""
    if any(isinstance(h, torch.Tensor) for h in history):
        vals = iter(torch.stack([h for h in history if isinstance(h, torch.Tensor)]).tolist())
        return [next(vals) / max(steps, 1) if isinstance(h, torch.Tensor) else h for h in history]
    return history


def _fmt3(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{float(v):.3f}" for v in t) + "]"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def check_hooks(p: dict, view_policy: ViewPolicy | None = None, pair_filter: PairFilter | None = None) -> None:
    """The hooks fit the settings ``p``: a view policy draws the second view's crop from the
    first's, which the batched augmentation does (per_sample draws the two views independently);
    a pair filter needs a method whose loss applies it (``drops_pairs``). Checked when a config is
    validated (before any work) and when :func:`pretrain` is called."""
    if view_policy is not None and p.get("augmentation") == "per_sample":
        raise UserError(f"{hook_name(view_policy, 'a view policy')} needs pretrain.augmentation batched: "
                        "per_sample draws the two views independently")
    method = METHODS.get(p.get("algorithm"))
    if pair_filter is not None and method is not None and not method.drops_pairs:
        raise UserError(f"{hook_name(pair_filter, 'a pair filter')} works with pretrain.algorithm "
                        f"{' or '.join(n for n, m in METHODS.items() if m.drops_pairs)} only, got {preview(p['algorithm'])}")


def load_backbone(path: str | Path, p: dict) -> torch.nn.Module:
    """The backbone saved at ``path`` (``encoder.pt``), with the input statistics it was trained with
    (CIFAR-10's for encoders saved before they were stored). It takes images in [0, 1]."""
    from .models import build_backbone

    backbone = build_backbone(p["backbone"], p["width"])
    backbone.load_state_dict(load_torch(path)["backbone"])
    return backbone
