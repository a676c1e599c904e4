"""The encoders of one run, each a function of what it needs: the clean encoder (shared cache), an
encoder on the unfiltered data (for a filter that scores with one), the poisoned encoder with the
pre- and in-processing defense, and the post-processing defense on either. Each reuses a finished
encoder (:func:`~.stages.pretrain_encoder`); :class:`~.pipeline.Experiment` calls them in order."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..attack.export import load_poisons
from ..defenses import DefenderData, Defense
from .rundata import RunData, cache_lock
from .rundir import RunDir
from . import encoder_cache as EC
from .stages import cache_root, clean_encoder_dir, filter_inputs, pretrain_encoder


def clean_encoder(cfg: dict, data: RunData, log: Callable[[str], None]) -> Path:
    """The clean encoder, trained once per setting in the shared cache (under its lock). A finished
    one there is used only if it passes its check (:func:`~.encoder_cache.sound`, for the folder's
    own key), read under a shared lock so that runs reusing it do not wait on each other; otherwise,
    under the exclusive lock, it is set aside and this one trains (or is copied from an entry kept
    by content), then sealed."""
    from ..ssl import distributed as D
    from ..ssl.pretrain_set import PretrainSet

    d, cache = clean_encoder_dir(cfg), cache_root(cfg)

    def make() -> PretrainSet:
        return PretrainSet.from_images(data.clean_pretrain_images())

    if not D.current().active:  # a finished encoder is read under a shared lock: readers never wait on each other
        with cache_lock(d, log, shared=True):
            if (d / "encoder.pt").exists() and EC.check(d, d.name) is None:
                return pretrain_encoder("clean", make, cfg["pretrain"], d, cfg["seed"], cfg["device"], log, cache=cache)
    with cache_lock(d, log):  # to train it, or to set a failed one aside
        main = D.current().is_main
        kept = EC.sound(d, d.name, log) if main else True
        D.barrier()  # the other ranks look for the encoder after rank 0 set a failed one aside
        enc = pretrain_encoder("clean", make, cfg["pretrain"], d, cfg["seed"], cfg["device"], log, cache=cache)
        if main and not kept:
            EC.seal(d, d.name)
        return enc


def unfiltered_encoder(cfg: dict, data: RunData, rundir: RunDir, log: Callable[[str], None]) -> Path:
    """An encoder pre-trained on the unfiltered pre-training set (clean and poisoning inputs, no
    defense), as a defender without clean data of its own has it: ``encoders/unfiltered/``."""
    from ..ssl.pretrain_set import PretrainSet

    def make() -> PretrainSet:
        return PretrainSet.from_images(data.clean_pretrain_images(), load_poisons(rundir.poisons)[1])

    return pretrain_encoder("unfiltered", make, cfg["pretrain"], rundir.unfiltered_encoder, cfg["seed"], cfg["device"], log,
                            cache=cache_root(cfg))


def poisoned_encoder(cfg: dict, data: RunData, rundir: RunDir, defense: Defense, filter_encoder: Path | None,
                     log: Callable[[str], None]) -> Path:
    """The run's poisoned encoder, on the clean inputs and the crafted poisoning inputs, with the
    pre-processing defense's filter (scoring with ``filter_encoder`` where it needs one) and the
    in-processing defense's settings and hooks."""
    from ..ssl.pretrain import load_backbone
    from ..ssl.pretrain_set import PretrainSet

    def make() -> PretrainSet:
        clean = data.clean_pretrain_images()
        _, poisons = load_poisons(rundir.poisons)
        if defense.stage == "pre":
            enc = load_backbone(filter_encoder, cfg["pretrain"]).to(cfg["device"]) if filter_encoder else None
            clean, poisons = filter_inputs(defense, clean, poisons, rundir.path, log, enc)
        return PretrainSet.from_images(clean, poisons)

    return pretrain_encoder("poisoned", make, defense.adjust_pretrain(dict(cfg["pretrain"])), rundir.poisoned_encoder,
                            cfg["seed"], cfg["device"], log, cache=cache_root(cfg), **defense.training_hooks())


def defended(cfg: dict, data: RunData, defense: Defense, encoder: Path, out: Path, log: Callable[[str], None]) -> Path:
    """The post-processing defense on ``encoder`` (its ``encoder.pt``) into ``out``, with the clean
    inputs the defender owns; the encoder itself for a defense of another stage."""
    if defense.stage != "post":
        return encoder
    owned = DefenderData(cfg["pretrain"], cfg["seed"], cfg["device"], out, data.pretrain_dataset().train.images,
                         data.spare_indices(), log)
    return defense.after_pretrain(encoder.parent, owned)[0]
