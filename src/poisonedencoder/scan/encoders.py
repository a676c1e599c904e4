"""The encoder crop_disagreement scores with, one of three choices (``scan``'s options):

- ``--encoder PATH``: the user's own encoder, trained on data the scan knows nothing about, loaded
  as ``evaluate --encoder`` loads one (:func:`poisonedencoder.experiment.external.load_encoder`: a state_dict
  with ``--arch``, ``--width``, ``--prefix``, ``--normalize``, or TorchScript with ``--trust-torchscript``);
- ``--clean-encoder PATH``: the same loader, for an encoder the user states was trained on clean
  data (the defender's clean encoder of the pipeline's ``crop_disagreement``);
- ``--train``: a SimCLR encoder pre-trained on FOLDER itself, poisoning inputs included (the
  pipeline's ``encoder: unfiltered``), by the toolkit's own loop
  (:func:`poisonedencoder.ssl.pretrain.pretrain`) with the toolkit's small backbone
  (:data:`TRAIN_SETTINGS`: CNN7 at width 16, Adam 1e-3, batch 256 or the folder's size, seed 0),
  for ``--train-epochs`` epochs and/or ``--train-minutes`` minutes of training, whichever ends
  first (the minutes are checked after each epoch, so the last epoch may pass them; at least one
  epoch is trained). It trains in ``OUT/train/`` with a checkpoint after every epoch: an
  interrupted scan resumes there, and the minutes count the training of every call.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.errors import UserError
from ..core.io import write_json
from ..core.torch_files import load_torch

TRAIN_SETTINGS = {"algorithm": "simclr", "backbone": "cnn7", "width": 16, "batch_size": 256}
"""``--train``'s pre-training settings; every other key is the ``pretrain`` section's default."""
DEFAULT_TRAIN_EPOCHS = 30
"""``--train`` without ``--train-epochs`` or ``--train-minutes``."""
SEED = 0
TRAINED_ON = {"encoder": "unknown (the user's encoder, --encoder)",
              "clean-encoder": "clean data (as the user states: --clean-encoder)",
              "train": "FOLDER itself, poisoning inputs included (--train: the unfiltered encoder)"}


def load_outside(path: str | Path, choice: str, image_size: int, arch: str | None = None, width: int | None = None,
                 prefix: str | None = None, normalize: str | None = None, trust_torchscript: bool = False):
    """``--encoder`` or ``--clean-encoder`` (``choice``): the module and what was loaded."""
    from ..experiment.external import load_encoder

    enc, source = load_encoder(path, arch=arch, width=32 if width is None else width, prefix=prefix,
                               normalize=normalize, image_size=image_size, trust_torchscript=trust_torchscript)
    return enc, {"choice": choice, "trained_on": TRAINED_ON[choice], **source, "image_size": image_size}


def train_settings(image_size: int, n: int, epochs: int) -> dict:
    """The ``pretrain`` settings of ``--train`` on ``n`` inputs at ``image_size``."""
    from .. import config as C

    p = C.resolve({}, [f"pretrain.{k}={v}" for k, v in TRAIN_SETTINGS.items() if k != "batch_size"]
                  + [f"pretrain.image_size={image_size}"])["pretrain"]
    p.update(epochs=epochs, batch_size=min(TRAIN_SETTINGS["batch_size"], n))
    return p


def _key(images: Sequence[np.ndarray], p: dict, seed: int, device: str) -> str:
    """What the trained encoder depends on, but for its budget: the inputs, the settings, the seed."""
    h = hashlib.sha256(json.dumps({k: v for k, v in p.items() if k != "epochs"}, sort_keys=True).encode())
    h.update(f"{seed} {device} {len(images)}".encode())
    for im in images:
        h.update(str(im.shape).encode())
        h.update(np.ascontiguousarray(im).data)
    return h.hexdigest()[:20]


def train_encoder(images: Sequence[np.ndarray], workdir: str | Path, image_size: int, epochs: int | None = None,
                  minutes: float | None = None, device: str = "cpu", log: Callable[[str], None] = print):
    """``--train`` (module docstring): the backbone (images in [0, 1] -> features) and what was done."""
    from ..ssl.pretrain import load_backbone, pretrain
    from ..ssl.pretrain_set import PretrainSet

    if len(images) < 2:
        raise UserError(f"--train needs at least 2 images to pre-train on, FOLDER has {len(images)}")
    if epochs is None and minutes is None:
        epochs = DEFAULT_TRAIN_EPOCHS
    goal = epochs if epochs is not None else 100_000
    p = train_settings(image_size, len(images), goal)
    d = Path(workdir)
    key, ckpt, enc = _key(images, p, SEED, device), d / "checkpoint.pt", d / "encoder.pt"
    state = json.loads((d / "train.json").read_text()) if (d / "train.json").is_file() else {}
    done, seconds = 0, 0.0
    if state.get("key") == key and ckpt.is_file():
        saved = load_torch(ckpt)
        done, seconds = int(saved["epoch"]), float(saved.get("seconds") or 0.0)
    if done > goal or (ckpt.exists() and done == 0):  # more epochs than asked, or another folder's or settings'
        log(f"train: {d} holds another training (other inputs, settings or more epochs); starting over")
        for f in (ckpt, enc):
            f.unlink(missing_ok=True)
        done, seconds = 0, 0.0
    write_json(d / "train.json", {"key": key, "settings": p})
    resumed, t_call = done, time.time()
    by_shape: dict[tuple, list[np.ndarray]] = {}
    for im in images:  # one array per shape: the batched augmentation runs per array (one per image: 10x slower)
        by_shape.setdefault(im.shape, []).append(im)
    data = PretrainSet([np.stack(group) for group in by_shape.values()])
    log(f"train: SimCLR {p['backbone']} width {p['width']} on {len(images)} inputs at {image_size}px, batch "
        f"{p['batch_size']}; budget {epochs if epochs is not None else 'any number of'} epochs"
        + (f", {minutes:g} minutes" if minutes is not None else "") + (f"; resuming after epoch {done}" if done else ""))
    stopped_by = "epochs"
    while done < goal:
        if minutes is not None and done > 0 and seconds >= minutes * 60:
            stopped_by = "minutes"
            break
        quiet = (lambda s, first=done == resumed: log(s) if first and "epoch" not in s else None)
        model = pretrain(data, dict(p, epochs=done + 1), d, SEED, device, desc="train", log=quiet)
        seconds += model.timing["seconds_this_call"]
        done += 1
        loss = load_torch(enc)["loss"][-1]
        log(f"train: epoch {done}" + (f"/{epochs}" if epochs is not None else "") + f", loss {loss:.4f}, "
            f"{seconds / 60:.2f} min of training")
    if not enc.is_file():  # stopped between the last checkpoint and its encoder.pt: written from the checkpoint
        pretrain(data, dict(p, epochs=done), d, SEED, device, desc="train", log=lambda _: None)
    if minutes is not None and seconds >= minutes * 60 and (epochs is None or done < epochs):
        stopped_by = "minutes"
    info = {"choice": "train", "trained_on": TRAINED_ON["train"], "algorithm": p["algorithm"], "backbone": p["backbone"],
            "width": p["width"], "image_size": image_size, "batch_size": p["batch_size"], "seed": SEED, "device": device,
            "epochs_asked": epochs, "minutes_asked": minutes, "epochs_done": done, "stopped_by": stopped_by,
            "minutes_taken": round(seconds / 60, 3), "minutes_this_call": round((time.time() - t_call) / 60, 3),
            "resumed_after_epoch": resumed, "final_loss": float(load_torch(enc)["loss"][-1]), "workdir": f"{d.name}/"}
    return load_backbone(enc, p).to(device).eval(), info
