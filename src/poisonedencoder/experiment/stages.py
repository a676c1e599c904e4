"""The stages of the paper's data flow, one function each, in order:

targets and reference inputs (:func:`choose_targets`) -> poisoning inputs (:func:`craft`, in the
run's order by :func:`craft_run`: poisons/,
poisons_grid.png) -> pre-training (:func:`pretrain_encoder`: the clean encoder in the shared cache,
:func:`clean_encoder_dir`; encoders/poisoned/) with a pre-processing defense (:func:`filter_inputs`)
-> downstream, metrics and report (:func:`measure`: metrics.json, report.md).

Each stage takes what it needs as arguments and calls no later stage;
:class:`~poisonedencoder.experiment.pipeline.Experiment` passes each stage's output to the next.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import config as C
from . import encoder_cache as EC
from ..attack import Attack, craft_rng, select_targets
from ..attack.export import GRID_LEGEND, save_grid, save_poisons
from ..attack.targets import Target
from ..data import ImageDataset
from ..data.datasets import DEFAULT_CACHE
from ..defenses import Defense
from ..core.io import write_json
from .report import format_table, write_report
from .rundir import RunDir, encoder_seconds, write_encoder_seconds

def choose_targets(task_cfgs: list[dict], tasks: list[ImageDataset], seed: int) -> list[Target]:
    """The target inputs and target classes of every task (``tasks[]`` of the config), in task order."""
    targets: list[Target] = []
    for i, (tcfg, ds) in enumerate(zip(task_cfgs, tasks, strict=True)):
        targets += select_targets(ds, i, tcfg["num_targets"], tcfg["targets"], seed)
    return targets


def clean_indices(num_images: int | None, total: int, seed: int) -> np.ndarray:
    """Which train-split inputs the clean pre-training set holds (all, or ``num_images`` drawn with the seed)."""
    if num_images is None or num_images >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng([seed, 0]).choice(total, size=num_images, replace=False))


def craft(attack: Attack, targets: list[Target], tasks: list[ImageDataset], num_clean: int, out: Path, seed: int,
          surrogate=None, log: Callable[[str], None] = print) -> None:
    """Build the poisoning inputs for ``targets`` (their reference inputs already chosen) within the
    budget and export them: ``out/poisons/`` (PNGs, manifest.json, timing.json), ``out/poisons_grid.png``."""
    t0 = time.time()
    poisons = attack.make(targets, tasks, attack.poisons_per_target(num_clean, len(targets)), craft_rng(seed), surrogate)
    seconds = time.time() - t0
    a = {"name": attack.name, "poisoning_rate": attack.poisoning_rate, "num_references": attack.num_references,
         "reference_selection": attack.reference_selection, attack.name: attack.settings.model_dump()}
    extra = {"attack": a, "num_clean_inputs": num_clean, "poisoning_rate": len(poisons) / num_clean,
             "class_names": [ds.classes for ds in tasks]}
    if getattr(attack, "matching", None):
        extra["gradient_matching_loss"] = [round(x, 4) for x in attack.matching]
    # timings apart from the manifest, so that crafting twice writes the same manifest bytes
    RunDir(out).write_craft_seconds(seconds, len(poisons))
    save_poisons(poisons, targets, RunDir(out).poisons, extra)
    shown = poisons[:: max(1, len(poisons) // 48)]
    save_grid([p.image for p in shown], out / "poisons_grid.png", labels=[f"T{p.target_id}" for p in shown],
              boxes=[attack.target_box(p) for p in shown], legend=GRID_LEGEND)
    log(f"craft: {len(poisons)} poisoning inputs for {len(targets)} target inputs "
        f"({100 * len(poisons) / num_clean:.2f}% of the {num_clean} clean inputs, "
        f"{100 * len(poisons) / (num_clean + len(poisons)):.2f}% of the pre-training set) in {time.time() - t0:.1f}s "
        f"-> {out / 'poisons'}")


def craft_run(cfg: dict, data, out: Path, clean_encoder: Callable[[], Path], check_sizes: Callable[[], None],
              log: Callable[[str], None] = print) -> None:
    """The attack stage of one run: target inputs, reference inputs (random, or the most typical by a
    clean encoder), the poisoning inputs (:func:`craft`) into ``out``. ``data`` is the run's
    :class:`~.rundata.RunData`. Where the attacker needs a clean encoder (typical reference inputs,
    a surrogate) ``clean_encoder()`` pre-trains it first, after ``check_sizes()`` (all ranks under
    torchrun); rank 0 crafts while the others wait."""
    from ..attack import build_attack, choose_references
    from ..ssl import distributed as D

    a, seed, p, dev = cfg["attack"], cfg["seed"], cfg["pretrain"], cfg["device"]
    attack = build_attack(a, seed)
    needs_clean = attack.needs_surrogate or a["reference_selection"] == "typical"
    if needs_clean:
        check_sizes()  # before the clean encoder trains
    clean = clean_encoder() if needs_clean else None
    if D.current().is_main:
        from ..ssl.pretrain import load_backbone

        tasks = data.tasks()
        targets = choose_targets(cfg["tasks"], tasks, seed)
        typ = typicality(load_backbone(clean, p), tasks, p["image_size"], dev) if a["reference_selection"] == "typical" else None
        choose_references(targets, tasks, a["num_references"], seed, typ)
        surrogate = load_surrogate(clean.parent / "checkpoint.pt", p, dev) if attack.needs_surrogate else None
        craft(attack, targets, tasks, len(data.clean_indices()), out, seed, surrogate, log)
    D.barrier()


def typicality(encoder, tasks: list[ImageDataset], image_size: int, device: str) -> list[np.ndarray]:
    """Per task, each train input's cosine to its class-mean feature under ``encoder`` (the attacker's
    surrogate: the clean encoder of this configuration, standing for one it pre-trains on its own
    clean data of the same distribution)."""
    from ..attack.targets import class_typicality
    from ..downstream import extract_features

    out = []
    for ds in tasks:
        f = extract_features(encoder, ds.train.images, image_size, device=device)
        out.append(class_typicality(f.cpu().numpy(), ds.train.labels, ds.num_classes))
    return out


def load_surrogate(checkpoint: Path, p: dict, device: str):
    """The attacker's surrogate for attacks that need one (Witches' Brew): the whole clean model of
    the configuration's method (backbone and heads), from the clean encoder's last checkpoint."""
    from ..attack.witches_brew import Surrogate
    from ..core.torch_files import load_torch
    from ..ssl.augment import AugmentParams
    from ..ssl.methods import build_method

    model = build_method(p)
    model.load_state_dict(load_torch(checkpoint)["model"])
    return Surrogate(model.to(device), AugmentParams.from_config(p), device)


def filter_inputs(defense: Defense, clean: np.ndarray, poisons: list, out: Path, log: Callable[[str], None] = print,
                  encoder=None):
    """Pre-processing defense: judge every pre-training input, keep the ones it passes, and score its
    verdicts against the ground truth (``out/defense.json``). Returns the kept clean inputs and poisons.
    ``encoder``: the defender's clean encoder, for a defense with ``needs_encoder``."""
    images = list(clean) + list(poisons)
    truth = np.r_[np.zeros(len(clean), bool), np.ones(len(poisons), bool)]
    report = defense.filter(images, encoder=encoder) if defense.needs_encoder else defense.filter(images)
    keep = ~report.verdicts
    write_json(out / "defense.json", report.to_dict(truth))
    s = report.score(truth)
    log(f"defense {defense.name}: removed {report.removed} of {len(images)} inputs "
        f"(precision {s['precision']:.3f}, recall {s['recall']:.3f}) in {report.seconds:.1f}s")
    return clean[keep[:len(clean)]], [im for im, k in zip(poisons, keep[len(clean):], strict=True) if k]


def pretrain_encoder(name: str, make_data: Callable, p: dict, d: Path, seed: int, device: str,
                     log: Callable[[str], None] = print, cache: Path | None = None, **hooks) -> Path:
    """Pre-train an encoder into ``d`` with settings ``p`` on ``make_data()`` (a :class:`PretrainSet`,
    built only when needed); reuses a finished one. Returns its ``encoder.pt``. ``hooks``: an
    in-training defense's (``view_policy``, ``pair_filter``), for :func:`~.ssl.pretrain.pretrain`.

    ``cache``: the shared cache, where an encoder trained on the same inputs with the same settings,
    seed, device and precision is taken instead of training again (a copy, once its entry passes
    its check), and where a copy of this one is kept (:mod:`~.encoder_cache`; never with hooks, nor
    across the processes of a distributed run)."""
    from ..ssl.pretrain import pretrain

    enc = d / "encoder.pt"
    if enc.exists():
        log(f"pretrain {name}: reusing {enc}")
        return enc
    t0 = time.time()
    data = make_data()
    key = content_key_of(data, p, seed, device, cache, hooks)
    if key is not None and EC.fetch(cache, key, d, log):
        log(f"pretrain {name}: the same inputs, settings and seed as an encoder trained before; reusing it "
            f"(pretrained/{key}) -> {d}")
        return enc
    log(f"pretrain {name}: {len(data)} inputs, {p['epochs']} epochs -> {d}")
    model = pretrain(data, p, d, seed, device, desc=f"pretrain {name}", log=log, **hooks)
    write_seconds(d, time.time() - t0, getattr(model, "timing", None))
    if key is not None:
        EC.publish(cache, key, d, log)
    return enc


def content_key_of(data, p: dict, seed: int, device: str, cache: Path | None, hooks: dict) -> str | None:
    """:func:`~.encoder_cache.content_key`, or None where no encoder is kept (no cache, an
    in-training defense's hooks, or one process of a distributed run)."""
    from ..ssl import distributed as D

    if cache is None or hooks or D.current().active:
        return None
    return EC.content_key(data, p, seed, device)


def write_seconds(d: Path, seconds: float, timing: dict | None) -> None:
    """The encoder's wall seconds in ``d``: :func:`poisonedencoder.experiment.rundir.write_encoder_seconds`."""
    write_encoder_seconds(d, seconds, timing)


def pretrain_seconds(d: str | Path) -> float | None:
    """The wall time :func:`pretrain_encoder` recorded for the encoder in ``d``, all calls together
    when it was resumed (None if none was recorded)."""
    return encoder_seconds(d)



def clean_encoder_dir(cfg: dict) -> Path:
    """Where the clean encoder of ``cfg`` lies in the shared cache (one per pre-training setting and seed)."""
    return cache_root(cfg) / "encoders" / C.clean_encoder_key(cfg)


def cache_root(cfg: dict) -> Path:
    """The shared cache of ``cfg`` (its ``cache_dir``, or the default)."""
    return Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else DEFAULT_CACHE


def measure(cfg: dict, rundir: RunDir, tasks: Callable[[], list[ImageDataset]], manifest: dict, encoders: dict,
            snapshots: list, extra: dict, after: dict, log: Callable[[str], None] = print) -> dict:
    """Downstream, metrics, report: every task of ``tasks()`` on ``encoders`` (``clean``, ``poisoned``),
    the summary -> ``metrics.json``, ``report.md`` in ``rundir``; returns the metrics."""
    import torch

    from .evaluation import evaluate_task
    from .metrics import summarize, threat_model

    p = cfg["pretrain"]
    if p.get("threads"):
        torch.set_num_threads(int(p["threads"]))
    t0 = time.time()
    targets = [Target(**t) for t in manifest["targets"]]
    per_task = [evaluate_task(encoders, snapshots, ds, ti, targets, p, cfg["downstream"], cfg["seed"],
                              cfg["device"]) for ti, ds in enumerate(tasks())]
    metrics = {
        **summarize(per_task),
        "num_poisoning_inputs": manifest["num_poisoning_inputs"],
        "num_clean_inputs": manifest["num_clean_inputs"],
        **threat_model(manifest["num_poisoning_inputs"], manifest["num_clean_inputs"], len(targets)),
        "tasks": per_task,
        **extra,
        "evaluate_seconds": round(time.time() - t0, 1),
        **after,
        "config_fingerprint": C.experiment_fingerprint(cfg),
    }
    write_json(rundir.metrics, metrics)
    write_report(rundir.report, cfg, metrics)
    log(format_table(metrics))
    return metrics
