"""``poisonedencoder scan FOLDER --out DIR``: score every image of an unlabeled folder with each
filter, flag the suspects at thresholds set without the truth, and, given a manifest of which
files are poisoning inputs, measure how well each filter finds them (docs/SCAN.md)."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import UserError
from ..core.io import file_lock
from ..core.folders import check_own_dir, claim_dir
from .folder import read_folder
from .scores import FILTERS, filter_scores, own_verdicts, threshold_verdicts

DEFAULT_FPR = 0.05
"""crop_disagreement's false-positive rate without ``--fpr`` (docs/SCAN.md: why 5%)."""
TRAIN_SIZE = 32
"""``--train``'s largest default image size (the crops' side), to keep self-training cheap."""
ENCODER_OPTIONS = ("arch", "width", "prefix", "normalize")
NO_ENCODER = "not run: it needs an encoder (--encoder PATH, --clean-encoder PATH or --train)"


def _check(filters, choices: dict, opts: dict) -> list[str]:
    """Every combination of options that makes no sense is a UserError, before any work; returns the filters."""
    given = [k for k, v in choices.items() if v]
    if len(given) > 1:
        raise UserError(f"--{given[0].replace('_', '-')} and --{given[1].replace('_', '-')} exclude each other: "
                        "crop_disagreement scores with one encoder")
    if filters is None:
        filters = [f for f in FILTERS if f != "crop_disagreement" or given]
    else:
        filters = [f.strip() for f in (filters.split(",") if isinstance(filters, str) else filters) if f.strip()]
        bad = [f for f in filters if f not in FILTERS]
        if bad or not filters:
            raise UserError(f"--filters: unknown filter {bad[0]!r}" if bad else "--filters names no filter"
                            + f"; choose from {', '.join(FILTERS)}")
        filters = [f for f in FILTERS if f in filters]
        if "crop_disagreement" in filters and not given:
            raise UserError("--filters crop_disagreement needs an encoder: give --encoder PATH, --clean-encoder PATH or --train")
    crop = "crop_disagreement" in filters
    for name in ("encoder", "clean_encoder", "train"):
        if choices[name] and not crop:
            raise UserError(f"--{name.replace('_', '-')} is crop_disagreement's encoder, and --filters leaves it out")
    needs = {"arch": "encoder", "width": "encoder", "prefix": "encoder", "normalize": "encoder", "trust_torchscript": "encoder",
             "train_epochs": "train", "train_minutes": "train", "fpr": "crop", "reference": "crop", "budget": "crop",
             "image_size": "crop"}
    for k, need in needs.items():
        if opts[k] is None:
            continue
        if need == "encoder" and not (choices["encoder"] or choices["clean_encoder"]):
            raise UserError(f"--{k.replace('_', '-')} goes with --encoder or --clean-encoder (how to load the file)")
        if need == "train" and not choices["train"]:
            raise UserError(f"--{k.replace('_', '-')} goes with --train (its budget)")
        if need == "crop" and not crop:
            why = "which --filters leaves out" if given else "which needs an encoder (--encoder, --clean-encoder or --train)"
            raise UserError(f"--{k.replace('_', '-')} is for crop_disagreement, {why}")
    if opts["budget"] is not None and (opts["fpr"] is not None or opts["reference"] is not None):
        raise UserError(f"--budget (the oracle's share) and --{'fpr' if opts['fpr'] is not None else 'reference'} "
                        "set the threshold in two ways: give one")
    for k, lo, hi in (("fpr", 0, 1), ("budget", 0, 1)):
        if opts[k] is not None and not lo < opts[k] < hi:
            raise UserError(f"--{k} must lie strictly between 0 and 1, got {opts[k]:g}")
    if opts["train_epochs"] is not None and not 1 <= opts["train_epochs"] <= 100_000:
        raise UserError(f"--train-epochs must be between 1 and 100000, got {opts['train_epochs']}")
    if opts["train_minutes"] is not None and not opts["train_minutes"] > 0:
        raise UserError(f"--train-minutes must be a positive number, got {opts['train_minutes']:g}")
    if opts["image_size"] is not None and not 8 <= opts["image_size"] <= 1024:
        raise UserError(f"--image-size must be between 8 and 1024, got {opts['image_size']}")
    if not 1 <= opts["top"] <= 1000:
        raise UserError(f"--top must be between 1 and 1000, got {opts['top']}")
    return filters


def scan(folder: str | Path, out: str | Path, filters=None, encoder: str | None = None, clean_encoder: str | None = None,
         train: bool = False, arch: str | None = None, width: int | None = None, prefix: str | None = None,
         normalize: str | None = None, train_epochs: int | None = None, train_minutes: float | None = None,
         image_size: int | None = None, fpr: float | None = None, reference: str | None = None,
         budget: float | None = None, manifest: str | None = None, top: int = 48, device: str = "cpu",
         log: Callable[[str], None] = print, trust_torchscript: bool = False) -> dict:
    """The scan (module docstring); writes ``out/scores.csv``, ``suspects.png``, ``report.md``,
    ``roc.png`` (with a manifest) and, last, ``scan.json``; returns what ``scan.json`` holds."""
    from ..ssl.pretrain import check_device
    from . import outputs

    t0 = time.time()
    opts = {"arch": arch, "width": width, "prefix": prefix, "normalize": normalize,
            "trust_torchscript": trust_torchscript or None, "train_epochs": train_epochs,
            "train_minutes": train_minutes, "fpr": fpr, "reference": reference, "budget": budget,
            "image_size": image_size, "top": top}
    choices = {"encoder": encoder, "clean_encoder": clean_encoder, "train": train}
    filters = _check(filters, choices, opts)
    check_device(device)
    root, out = Path(folder).expanduser(), Path(out).expanduser()
    if not root.is_dir():
        raise UserError(f"FOLDER {root} {'is not a folder' if root.exists() else 'does not exist'}")
    if out.absolute() == root.absolute() or (out.exists() and out.resolve() == root.resolve()):
        raise UserError(f"--out {out} is FOLDER itself: give a new folder for the scan's outputs")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose a new folder for the scan's outputs")
    check_own_dir(out, "scan folder (--out)")  # before reading; nothing is written until the inputs are read
    data = read_folder(root, "FOLDER", exclude=(out,), log=log)
    ref = read_folder(reference, "--reference", exclude=(out,), log=log) if reference is not None else None
    truth = None
    if manifest is not None:
        from .truth import ground_truth

        truth = ground_truth(manifest, data)
    rate = fpr if fpr is not None else DEFAULT_FPR
    if ref is not None and budget is None:
        from ..defenses.threshold import reference_threshold

        reference_threshold(np.zeros(len(ref.images)), rate)  # too small a reference for the rate: refused now
    t_read = time.time() - t0
    log(f"scan: {len(data.images)} images in {data.root} ({len(data.skipped)} skipped, {data.others} other files)")
    crop = "crop_disagreement" in filters
    usual = min(Counter(im.shape[:2] for im in data.images).most_common(1)[0][0])
    size = image_size or (min(usual, TRAIN_SIZE) if train else usual)
    enc, enc_info = None, None
    if crop and not train:  # loaded and checked before anything is written
        from .encoders import load_outside

        t1 = time.time()
        enc, enc_info = load_outside(encoder or clean_encoder, "encoder" if encoder else "clean-encoder", size,
                                     arch, width, prefix, normalize, trust_torchscript)
        enc, enc_info["seconds"] = enc.to(device), round(time.time() - t1, 2)
    out = claim_dir(out, "scan folder (--out)")
    with file_lock(out / ".lock", on_wait=lambda: log(f"scan: another scan writes into {out}; waiting for it")):
        outputs.begin(out)  # the last scan's scan.json goes first: the outputs are a finished scan's only beside it
        if crop and train:
            from .encoders import train_encoder

            t1 = time.time()
            enc, enc_info = train_encoder(data.images, out / "train", size, train_epochs, train_minutes, device, log)
            enc_info["seconds"] = round(time.time() - t1, 2)
        results, scores = _score(filters, data, ref, truth, enc, size, rate, budget, log)
        result = {"format": "poisonedencoder-scan/1", "folder": str(data.root), "out": str(out.absolute()),
                  "images": len(data.images), "skipped": [{"file": f, "reason": r} for f, r in data.skipped],
                  "other_files": data.others, "filters_run": list(filters), "image_size": size if crop else None,
                  "encoder": enc_info, "filters": results,
                  "reference": None if ref is None else {"folder": str(ref.root), "images": len(ref.images),
                                                         "skipped": [{"file": f, "reason": r} for f, r in ref.skipped]},
                  "manifest": None if truth is None else truth[1], "device": device,
                  "seconds": {"reading": round(t_read, 2), "total": None}}
        outputs.write_all(out, data, scores, truth[0] if truth is not None else None, result, top, t0)
    return result


def _score(filters: list[str], data, ref, truth, enc, size: int, rate: float, budget: float | None,
           log: Callable[[str], None]) -> tuple[dict, dict]:
    """Every filter's scores, verdicts and (with the truth) detection metrics: ``(results, {name: (scores, verdicts)})``."""
    from .detection import detection

    results, scores = {}, {}
    for name in FILTERS:
        if name not in filters:
            results[name] = {"ran": False, "why": NO_ENCODER if name == "crop_disagreement" and enc is None
                             else "not run: left out by --filters"}
            continue
        t1 = time.time()
        log(f"scan: scoring {len(data.images)} images with {name}")
        s = filter_scores(name, data.images, enc, size, log)
        extra = {}
        if name == "crop_disagreement":
            ref_scores = filter_scores(name, ref.images, enc, size, log) if ref is not None else None
            verdicts, thr = threshold_verdicts(s, rate, ref_scores, budget)
            if ref_scores is not None:
                extra["reference_scores"] = _summary(ref_scores)
        else:
            verdicts, thr = own_verdicts(name, s)
        scores[name] = (s, verdicts)
        results[name] = {"ran": True, "threshold": thr, "flagged": int(verdicts.sum()), "scores": _summary(s), **extra,
                         "flagged_files": [data.paths[i] for i in np.flatnonzero(verdicts)],
                         "seconds": round(time.time() - t1, 2)}
        if truth is not None:
            results[name]["detection"] = detection(s, truth[0], thr.get("value"), verdicts)
        log(f"scan: {name}: {int(verdicts.sum())} of {len(s)} flagged ({thr['rule']})")
    return results, scores


def _summary(s: np.ndarray) -> dict:
    s = np.asarray(s, float)
    return {"min": float(s.min()), "median": float(np.median(s)), "max": float(s.max())} if s.size else {}
