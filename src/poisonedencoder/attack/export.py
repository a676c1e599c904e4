"""Poisoning inputs as PNG files plus a JSON manifest, for any outside pre-training pipeline."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import UserError
from ..core.errors import preview as _preview
from ..core.io import atomic_write, naming, write_json
from ..core.folders import check_no_symlink


def save_poisons(poisons, targets, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``directory/NNNNNN.png`` for each poisoning input and ``directory/manifest.json`` last."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, p in enumerate(poisons):
        name = f"{i:06d}.png"
        atomic_write(d / name, lambda tmp, im=p.image: Image.fromarray(im).save(tmp, format="PNG"))
        entries.append({"file": name, **p.meta()})
    manifest = {"format": "poisonedencoder-poisons/1", "num_poisoning_inputs": len(poisons),
                "targets": [t.to_dict() for t in targets], "poisoning_inputs": entries, **(extra or {})}
    return write_json(d / "manifest.json", manifest)


def load_poisons(directory: str | Path) -> tuple[dict, list[np.ndarray]]:
    """Read the manifest and its PNG files back as uint8 arrays. Every file it lists must lie in its
    own folder once links are resolved (the craft writes them there): an entry such as
    ``../../x.png`` or ``/abs.png`` is a :class:`UserError`, never read. An image that cannot be
    decoded is one too, naming the file and why (:func:`~poisonedencoder.data.base.open_rgb`)."""
    from ..data.base import ImageRefused, open_rgb

    d = Path(directory)
    mf = d / "manifest.json"
    if not mf.is_file():
        raise UserError(f"no poison manifest at {mf}; run the craft stage first")
    try:
        manifest = json.loads(mf.read_text())
        entries = manifest["poisoning_inputs"]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"poison manifest {mf} is corrupt ({type(e).__name__})") from e
    if not isinstance(entries, list):
        raise UserError(f"poison manifest {mf} is corrupt (poisoning_inputs is not a list)")
    root, images = d.resolve(), []
    for i, e in enumerate(entries):
        name = e.get("file") if isinstance(e, dict) else None
        if not isinstance(name, str) or not name:
            raise UserError(f"poison manifest {mf} is corrupt (poisoning_inputs[{i}] names no file)")
        f = d / name
        try:
            inside = f.resolve().is_relative_to(root)
        except (OSError, ValueError, RuntimeError):  # a NUL byte, a loop of links
            inside = False
        if not inside:
            raise UserError(f"poison manifest {mf}: poisoning_inputs[{i}] names {_preview(name)}, which lies outside "
                            f"{d} (links resolved); refused: a manifest lists only files of its own folder")
        try:
            images.append(np.asarray(open_rgb(f), dtype=np.uint8))
        except ImageRefused as ex:
            raise UserError(f"cannot read poisoning input {f}: {ex}") from None
    return manifest, images


GRID_LEGEND = ("T<n>: a poisoning input for target input n (manifest.json: targets[n]); red box: the target "
               "input, the rest of the tile: a reference input of its target class")


def target_box(p, gap: int = 0) -> tuple[int, int, int, int] | None:
    """Where poisoning input ``p`` (a :class:`PoisoningInput`) shows its target input, as
    ``(top, left, bottom, right)`` pixels (a ``2x2`` tiling shows it twice: its top tile); None where the target is not one region of it (ICP's
    blend, an overlay at an unrecorded place, Witches' Brew's perturbed reference inputs)."""
    h, w = p.image.shape[:2]
    if p.kind == "left-right":
        half = (w - gap) // 2
        return (0, 0, h, half) if p.target_first else (0, w - half, h, w)
    if p.kind == "top-bottom":
        half = (h - gap) // 2
        return (0, 0, half, w) if p.target_first else (h - half, 0, h, w)
    if p.kind == "2x2":  # the target's first tile: top-left (target first), else top-right
        hh, hw = (h - gap) // 2, (w - gap) // 2
        return (0, 0, hh, hw) if p.target_first else (0, w - hw, hh, w)
    if p.kind == "copy":
        return (0, 0, h, w)
    return None


def save_grid(images: list[np.ndarray], path: str | Path, columns: int = 8, limit: int = 48, pad: int = 2,
              scale: int | None = None, labels: list[str] | None = None,
              boxes: list[tuple[int, int, int, int] | None] | None = None, legend: str | None = None) -> Path | None:
    """A PNG grid of the first ``limit`` images (each centred in a cell of the largest size, drawn
    ``scale`` times larger: by default so that a cell is at least 64 pixels). ``labels``: a caption
    under each tile; ``boxes``: a red frame around that region of each image (``target_box``);
    ``legend``: a line of text above the grid."""
    from PIL import ImageDraw, ImageFont

    images = images[:limit]
    if not images:
        return None
    font = ImageFont.load_default()
    ih, iw = max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    scale = scale or max(2, -(-64 // max(ih, iw)))
    cap = 14 if labels else 0
    ch, cw = ih * scale + cap + pad, iw * scale + pad
    head = 16 if legend else 0
    width = max(min(columns, len(images)) * cw + pad, int(font.getlength(legend)) + 2 * pad if legend else 0)
    rows = (len(images) + columns - 1) // columns
    canvas = Image.new("RGB", (width, head + rows * ch + pad), "white")
    draw = ImageDraw.Draw(canvas)
    if legend:
        draw.text((pad, 2), legend, fill="black", font=font)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        y = head + r * ch + pad + (ih - im.shape[0]) * scale // 2
        x = c * cw + pad + (iw - im.shape[1]) * scale // 2
        tile = Image.fromarray(im).resize((im.shape[1] * scale, im.shape[0] * scale), Image.NEAREST)
        canvas.paste(tile, (x, y))
        if boxes is not None and boxes[k] is not None:
            top, left, bottom, right = boxes[k]
            draw.rectangle((x + left * scale, y + top * scale, x + right * scale - 1, y + bottom * scale - 1),
                           outline=(255, 0, 0), width=max(1, scale // 2))
        if labels:
            draw.text((c * cw + pad, head + r * ch + pad + ih * scale + 1), labels[k], fill="black", font=font)
    return atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))


# ---------------------------------------------------------------------------------------------- image folder
IMAGEFOLDER_CLASS = "unlabeled"
"""The one class folder of an exported pre-training set (``torchvision.datasets.ImageFolder`` needs one)."""


def check_export_dir(dest: str | Path) -> Path:
    """``dest`` can receive an exported image folder: absent, or an empty folder. Raises
    :class:`UserError` otherwise, so that a craft fails before any work and never mixes two sets."""
    d = Path(dest).expanduser().absolute()
    check_no_symlink(d, "--export-imagefolder")
    if d.exists() and not d.is_dir():
        raise UserError(f"--export-imagefolder {d} is a file, not a folder; choose a new or empty folder")
    if d.is_dir() and any(d.iterdir()):
        raise UserError(f"--export-imagefolder {d} is not empty; choose a new or empty folder")
    return d


def _new_temp_dir(parent: Path, name: str) -> Path:
    """A new folder beside the destination, with the usual permissions (``0777`` less the umask;
    ``mkdtemp`` would make it 0700)."""
    import secrets

    parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = parent / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            tmp.mkdir(0o777)
            return tmp
        except FileExistsError:  # pragma: no cover (2**48 names)
            continue


def export_imagefolder(clean: np.ndarray, clean_indices, manifest: dict, poisons: list[np.ndarray],
                       dest: str | Path) -> Path:
    """Write the pre-training set as torchvision's ImageFolder layout: ``dest/unlabeled/clean_NNNNNN.png``
    (the clean pre-training inputs, uint8 ``(N, H, W, 3)``; ``clean_indices`` are their indices in
    the pre-training dataset's train split) and ``dest/unlabeled/poison_NNNNNN.png`` (the poisoning
    inputs of ``manifest``, at their own size: 32x64, 64x32), with ``dest/manifest.json``: the craft
    manifest, each poisoning input's ``file`` relative to ``dest``, and ``clean_inputs`` (file, train
    index). Everything is written into a temporary folder beside ``dest`` and renamed onto it at the
    end, so ``dest`` is either absent (or empty) or complete. Returns ``dest``."""
    import shutil

    d = check_export_dir(dest)
    if len(poisons) != len(manifest["poisoning_inputs"]):
        raise ValueError("poisons and manifest differ in length")
    tmp = _new_temp_dir(d.parent, d.name)
    try:
        sub = tmp / IMAGEFOLDER_CLASS
        sub.mkdir(0o777)
        clean_entries = []
        for i, (img, idx) in enumerate(zip(clean, clean_indices, strict=True)):
            name = f"{IMAGEFOLDER_CLASS}/clean_{i:06d}.png"
            with naming(d / name):  # a full disk: the file it stopped at (written in tmp, renamed onto d)
                Image.fromarray(img).save(tmp / name, format="PNG")
            clean_entries.append({"file": name, "train_index": int(idx)})
        poison_entries = []
        for i, (img, e) in enumerate(zip(poisons, manifest["poisoning_inputs"], strict=True)):
            name = f"{IMAGEFOLDER_CLASS}/poison_{i:06d}.png"
            with naming(d / name):
                Image.fromarray(img).save(tmp / name, format="PNG")
            poison_entries.append({**e, "file": name})
        out = {**manifest, "poisoning_inputs": poison_entries,
               "imagefolder": {"format": "poisonedencoder-imagefolder/1", "class_folder": IMAGEFOLDER_CLASS,
                               "num_clean_inputs": len(clean_entries), "num_poisoning_inputs": len(poison_entries),
                               "note": "files are relative to this folder; clean_inputs are the clean pre-training "
                                       "inputs, poisoning_inputs the attacker's"},
               "clean_inputs": clean_entries}
        write_json(tmp / "manifest.json", out)
        try:
            os.rename(tmp, d)  # onto an absent or empty folder: atomic
        except OSError as e:
            raise UserError(f"--export-imagefolder {d} cannot be written ({e.strerror}); choose a new or empty folder") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return d
