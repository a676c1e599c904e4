"""Poisoning inputs as PNG files plus a JSON manifest, for any outside pre-training pipeline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from ..io import atomic_write, write_json


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
    """Read the manifest and its PNG files back as uint8 arrays."""
    d = Path(directory)
    mf = d / "manifest.json"
    if not mf.is_file():
        raise UserError(f"no poison manifest at {mf}; run the craft stage first")
    try:
        manifest = json.loads(mf.read_text())
        entries = manifest["poisoning_inputs"]
    except (ValueError, KeyError) as e:
        raise UserError(f"poison manifest {mf} is corrupt ({type(e).__name__})") from e
    images = []
    for e in entries:
        f = d / e["file"]
        try:
            with Image.open(f) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        except Exception as ex:
            raise UserError(f"cannot read poisoning input {f}: {type(ex).__name__}") from ex
    return manifest, images


def save_grid(images: list[np.ndarray], path: str | Path, columns: int = 8, limit: int = 48, pad: int = 2,
              scale: int = 2) -> Path | None:
    """A PNG grid of the first ``limit`` images (each centred in a cell of the largest size)."""
    images = images[:limit]
    if not images:
        return None
    ch = max(i.shape[0] for i in images) + pad
    cw = max(i.shape[1] for i in images) + pad
    rows = (len(images) + columns - 1) // columns
    canvas = np.full((rows * ch + pad, min(columns, len(images)) * cw + pad, 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        y = r * ch + pad + (ch - pad - im.shape[0]) // 2
        x = c * cw + pad + (cw - pad - im.shape[1]) // 2
        canvas[y:y + im.shape[0], x:x + im.shape[1]] = im
    img = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
