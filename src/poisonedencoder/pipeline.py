"""One experiment: the stages of the paper's data flow, run in order by :class:`Experiment`.

targets and reference inputs -> poisoning inputs (craft: poisons/, poisons_grid.png)
-> pre-training (the clean encoder in the shared cache, encoders/poisoned/) -> defense
-> downstream -> metrics (metrics.json) -> report (report.md)

Each stage is a function of :mod:`.stages` that takes what it needs as arguments and calls no
later stage; :class:`Experiment` holds the run directory, loads the datasets and passes each stage's output
to the next. Each stage reuses what an earlier call finished, so an interrupted run resumes.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from .attack import build_attack, choose_references
from .attack.export import load_poisons
from .config_files import dump
from .data.datasets import DEFAULT_CACHE
from .defenses import DefenderData, Defense, build_defense
from .fingerprints import experiment_fingerprint
from .io import check_own_dir, ensure_writable_dir
from .rundata import RunData, RunLock, cache_lock
from .rundir import RunDir
from .stages import (
    choose_targets,
    clean_encoder_dir,
    clean_indices,
    craft,
    filter_inputs,
    load_surrogate,
    measure,
    pretrain_encoder,
    pretrain_seconds,
    typicality,
    write_seconds,
)

__all__ = ["Experiment", "choose_targets", "clean_encoder_dir", "clean_indices", "craft", "filter_inputs",
           "load_surrogate", "measure", "pretrain_encoder", "pretrain_seconds", "typicality", "write_seconds"]


# ---------------------------------------------------------------------------------------------- the run
def _holding_run_lock(method):
    """Run the stage while holding the run directory's lock (:class:`~.rundata.RunLock`)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._run_lock():
            return method(self, *args, **kwargs)

    return locked


class Experiment:
    """The run directory ``out`` of configuration ``cfg``, and the stages in order. Each method runs
    the stages that its result needs (``evaluate``: all of them), reusing finished ones. ``data``
    (:class:`~.rundata.RunData`) holds the datasets and the clean pre-training inputs."""

    def __init__(self, cfg: dict, out: str | Path, log=print):
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.dir = RunDir(self.out)
        self.cache = Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else DEFAULT_CACHE
        self.data = RunData(cfg, self.cache)
        self._run_lock = RunLock(self.dir.lock, self.out, log)
        self._check_out_dir()

    def _check_out_dir(self) -> None:
        """Before any work: the run directory and the cache are writable folders, and the run
        directory holds no run of another configuration."""
        check_own_dir(self.out, "run directory (--out)")
        ensure_writable_dir(self.out, "run directory (--out)")
        ensure_writable_dir(self.cache, "cache directory (--cache-dir)")
        fp = experiment_fingerprint(self.cfg)
        self.dir.check_own(fp)
        self.out.mkdir(parents=True, exist_ok=True)
        if _is_main():
            self.dir.write_stamp(fp, dump(self.cfg))

    def check_sizes(self) -> None:
        """:meth:`~.rundata.RunData.check_sizes` with this run's defense, before any training."""
        self.data.check_sizes(build_defense(self.cfg["defense"]))

    # -------------------------------------------------------------------------------- craft
    @_holding_run_lock
    def craft(self) -> dict:
        """Target inputs, reference inputs, poisoning inputs; returns the manifest. Where the attacker
        needs a clean encoder (typical reference inputs, a surrogate) it is pre-trained first (all
        ranks under torchrun); rank 0 crafts while the others wait."""
        from .ssl import distributed as D

        if self.dir.manifest.exists():
            self.log(f"craft: reusing {self.dir.poisons}")
            return load_poisons(self.dir.poisons)[0]
        a, seed, p, dev = self.cfg["attack"], self.cfg["seed"], self.cfg["pretrain"], self.cfg["device"]
        attack = build_attack(a, seed)
        needs_clean = attack.needs_surrogate or a["reference_selection"] == "typical"
        if needs_clean:
            self.check_sizes()  # before the clean encoder trains
        clean = self.pretrain_clean() if needs_clean else None
        if D.current().is_main:
            from .ssl.pretrain import load_backbone

            tasks = self.data.tasks()
            targets = choose_targets(self.cfg["tasks"], tasks, seed)
            typ = typicality(load_backbone(clean, p), tasks, p["image_size"], dev) if a["reference_selection"] == "typical" else None
            choose_references(targets, tasks, a["num_references"], seed, typ)
            surrogate = load_surrogate(clean.parent / "checkpoint.pt", p, dev) if attack.needs_surrogate else None
            craft(attack, targets, tasks, len(self.data.clean_indices()), self.out, seed, surrogate, self.log)
        D.barrier()
        return load_poisons(self.dir.poisons)[0]

    @_holding_run_lock
    def export_imagefolder(self, dest: str | Path) -> Path:
        """Craft (or reuse the craft) and write the pre-training set, clean inputs and poisoning inputs,
        as one plain image folder ``dest/unlabeled/*.png`` with the manifest in ``dest/manifest.json``
        (:func:`~poisonedencoder.attack.export.export_imagefolder`), for a pre-training pipeline of
        one's own. No defense is applied: the folder is what the victim would collect."""
        from .attack.export import check_export_dir, export_imagefolder

        dest = check_export_dir(dest)  # before any work
        manifest = self.craft()
        if _is_main():
            _, poisons = load_poisons(self.dir.poisons)
            export_imagefolder(self.data.clean_pretrain_images(), self.data.clean_indices(), manifest, poisons, dest)
            self.log(f"export: {len(self.data.clean_indices())} clean inputs and {len(poisons)} poisoning inputs "
                     f"-> {dest}/unlabeled/ (manifest.json beside it)")
        return dest

    # -------------------------------------------------------------------------------- pre-train
    def pretrain_clean(self) -> Path:
        """The clean encoder (shared cache, trained once per setting)."""
        from .ssl.pretrain_set import PretrainSet

        d = clean_encoder_dir(self.cfg)
        with cache_lock(d, self.log):
            return pretrain_encoder("clean", lambda: PretrainSet.from_images(self.data.clean_pretrain_images()),
                                    self.cfg["pretrain"], d, self.cfg["seed"], self.cfg["device"], self.log)

    def pretrain_poisoned(self, defense: Defense) -> Path:
        """The poisoned encoder of this run, on the clean inputs and the crafted poisons, with the
        pre- and in-processing defense (a filter with ``needs_encoder`` gets the clean encoder)."""
        from .ssl.pretrain import load_backbone
        from .ssl.pretrain_set import PretrainSet

        def data() -> PretrainSet:
            clean = self.data.clean_pretrain_images()
            _, poisons = load_poisons(self.dir.poisons)
            if defense.stage == "pre":
                enc = load_backbone(own, self.cfg["pretrain"]).to(self.cfg["device"]) if own else None
                clean, poisons = filter_inputs(defense, clean, poisons, self.out, self.log, enc)
            return PretrainSet.from_images(clean, poisons)

        own = None
        if not (self.dir.poisoned_encoder / "encoder.pt").exists():
            self.craft()
            if defense.needs_encoder:  # the filter's encoder: the defender's clean one, or one on the unfiltered data
                own = self.pretrain_clean() if defense.encoder_source == "clean" else self.pretrain_unfiltered()
        return pretrain_encoder("poisoned", data, defense.adjust_pretrain(dict(self.cfg["pretrain"])),
                                self.dir.poisoned_encoder, self.cfg["seed"], self.cfg["device"], self.log,
                                **defense.training_hooks())

    def pretrain_unfiltered(self) -> Path:
        """An encoder pre-trained on the unfiltered pre-training set (clean and poisoning inputs, no
        defense), as a defender without clean data of its own has it: ``encoders/unfiltered/``."""
        from .ssl.pretrain_set import PretrainSet

        def data() -> PretrainSet:
            return PretrainSet.from_images(self.data.clean_pretrain_images(), load_poisons(self.dir.poisons)[1])

        return pretrain_encoder("unfiltered", data, self.cfg["pretrain"], self.dir.unfiltered_encoder,
                                self.cfg["seed"], self.cfg["device"], self.log)

    def defend(self, defense: Defense, encoder: Path, out: Path | None = None) -> Path:
        """Post-processing defense on an encoder (the poisoned one; with ``out``, the clean one as the
        defense's control, into ``out``); the other defenses acted during pre-training."""
        if defense.stage != "post":
            return encoder
        data = DefenderData(self.cfg["pretrain"], self.cfg["seed"], self.cfg["device"], out or self.out,
                            self.data.pretrain_dataset().train.images, self.data.spare_indices(), self.log)
        return defense.after_pretrain(encoder.parent, data)[0]

    @_holding_run_lock
    def pretrain(self, which: str = "both") -> dict[str, Path]:
        """Pre-train the clean encoder (shared cache) and/or the poisoned one (this run, defended)."""
        self.check_sizes()
        paths = {}
        if which in ("both", "clean"):
            paths["clean"] = self.pretrain_clean()
        if which in ("both", "poisoned"):
            defense = build_defense(self.cfg["defense"])
            paths["poisoned"] = self.defend(defense, self.pretrain_poisoned(defense))
            if "clean" in paths and getattr(defense, "fine_tunes_clean", False):  # the control: the same defense on the clean encoder
                paths["clean"] = self.defend(defense, paths["clean"], out=self.out / "control")
        return paths

    # -------------------------------------------------------------------------------- evaluate
    @_holding_run_lock
    def evaluate(self) -> dict:
        """Downstream classifiers on both encoders; CA, PA, ASR, clean_ASR, cosines -> metrics.json, report.md."""
        from .ssl.pretrain import load_backbone

        self.check_sizes()
        manifest = self.craft()
        paths = self.pretrain("both")
        if not _is_main():
            return {}  # under torchrun, rank 0 evaluates
        p = self.cfg["pretrain"]
        encoders = {k: load_backbone(v, p) for k, v in paths.items()}
        snapshots = [(int(s.stem.split("_")[1]), load_backbone(s, p))
                     for s in sorted((self.dir.poisoned_encoder / "snapshots").glob("epoch_*.pt"))]
        defense_json = self.out / "defense.json"
        return self._measure(manifest, encoders, snapshots, {"encoders": {k: str(v) for k, v in paths.items()}}, {
            "defense": json.loads(defense_json.read_text()) if defense_json.exists() else {"name": self.cfg["defense"]["name"]},
        })

    @_holding_run_lock
    def evaluate_encoders(self, poisoned, clean=None, files: dict | None = None) -> dict:
        """Downstream classifiers on encoders trained anywhere, for this run's target inputs (crafted
        here, or reused): ``poisoned`` and optionally ``clean`` are modules that take images in [0, 1]
        and return features (:func:`poisonedencoder.external.load_encoder` makes one from a file).
        Without ``clean``, CA, clean ASR and the clean margins are ``None`` (not measured).
        ``files``: what was loaded per encoder (path, sha256, ...), recorded as ``encoder_files``.
        Writes metrics.json and report.md like :meth:`evaluate` (replacing a previous evaluation's)."""
        manifest = self.craft()
        if not _is_main():
            return {}
        encoders = {"clean": clean, "poisoned": poisoned} if clean is not None else {"poisoned": poisoned}
        files = files or {}
        return self._measure(manifest, encoders, [], {
            "encoders": {k: files[k]["path"] if k in files else "(module)" for k in encoders},
            "encoder_files": {k: files.get(k) for k in encoders},
            "outside_encoders": True,
        }, {})

    def _measure(self, manifest: dict, encoders: dict, snapshots: list, extra: dict, after: dict) -> dict:
        """Every task on ``encoders`` (``clean``, ``poisoned``), the summary -> metrics.json, report.md."""
        return measure(self.cfg, self.dir, self.data.tasks, manifest, encoders, snapshots, extra, after, self.log)

    def run(self) -> dict:
        return self.evaluate()


def _is_main() -> bool:
    from .ssl.distributed import current

    return current().is_main
