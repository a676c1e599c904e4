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
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from . import config as C
from .attack import build_attack, choose_references
from .attack.export import load_poisons
from .data import ImageDataset, load_dataset
from .data.datasets import DEFAULT_CACHE
from .defenses import DefenderData, Defense, build_defense
from .errors import UserError
from .io import check_own_dir, ensure_writable_dir, file_lock
from .rundir import RunDir
from .stages import (choose_targets, clean_encoder_dir, clean_indices, craft, filter_inputs, load_surrogate, measure,
                     pretrain_encoder, pretrain_seconds, typicality, write_seconds)

__all__ = ["Experiment", "choose_targets", "clean_encoder_dir", "clean_indices", "craft", "filter_inputs",
           "load_surrogate", "measure", "pretrain_encoder", "pretrain_seconds", "typicality", "write_seconds"]


# ---------------------------------------------------------------------------------------------- the run
def _holding_run_lock(method):
    """Run the stage while holding the run directory's lock (:meth:`Experiment._run_lock`)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._run_lock():
            return method(self, *args, **kwargs)

    return locked


class Experiment:
    """The run directory ``out`` of configuration ``cfg``, and the stages in order. Each method runs
    the stages that its result needs (``evaluate``: all of them), reusing finished ones."""

    def __init__(self, cfg: dict, out: str | Path, log=print):
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.dir = RunDir(self.out)
        self.cache = Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else DEFAULT_CACHE
        self._datasets: dict[str, ImageDataset] = {}
        self._locked, self._sizes_checked = False, False
        self._check_out_dir()

    @contextmanager
    def _run_lock(self):
        """Hold ``OUT/.lock`` while a stage of this run runs (re-entrant within this object): a second
        run into the same folder (the same command twice) waits, says so, then reuses what the first
        finished, instead of training into the same checkpoint at the same time. The kernel drops
        the lock when its holder dies. Under torchrun rank 0 holds it."""
        if self._locked or not _is_main():
            yield
            return
        lock = self.dir.lock

        def wait() -> None:
            self.log(f"another run is using {self.out}; waiting for it to finish ({lock})")

        with file_lock(lock, wait):
            self._locked = True
            try:
                yield
            finally:
                self._locked = False

    def check_sizes(self) -> None:
        """The checks that need only the config and the datasets' sizes, before any training (they
        would otherwise fail only after an encoder trained): the batch fits the clean pre-training
        set, and the defense's own (:meth:`~poisonedencoder.defenses.Defense.check_sizes`: fine-tuning
        needs ``num_clean`` train inputs that pre-training leaves unused)."""
        if self._sizes_checked:
            return
        ds = self.dataset(self.cfg["pretrain_data"]["dataset"])
        num_clean, batch = len(self._clean_indices()), self.cfg["pretrain"]["batch_size"]
        if batch > num_clean:
            raise UserError(f"pretrain.batch_size {batch} is larger than the pre-training set ({num_clean} inputs)")
        build_defense(self.cfg["defense"]).check_sizes(len(ds.train), num_clean)
        self._sizes_checked = True

    def _check_out_dir(self) -> None:
        """Before any work: the run directory and the cache are writable folders, and the run
        directory holds no run of another configuration."""
        check_own_dir(self.out, "run directory (--out)")
        ensure_writable_dir(self.out, "run directory (--out)")
        ensure_writable_dir(self.cache, "cache directory (--cache-dir)")
        fp = C.experiment_fingerprint(self.cfg)
        self.dir.check_own(fp)
        self.out.mkdir(parents=True, exist_ok=True)
        if _is_main():
            self.dir.write_stamp(fp, C.dump(self.cfg))

    def dataset(self, spec: str) -> ImageDataset:
        if spec not in self._datasets:
            self._datasets[spec] = load_dataset(spec, self.cfg["pretrain"]["image_size"], self.cfg["data_root"],
                                                self.cache, progress=True)
        return self._datasets[spec]

    def tasks(self) -> list[ImageDataset]:
        return [self.dataset(t["dataset"]) for t in self.cfg["tasks"]]

    def _clean_indices(self) -> np.ndarray:
        ds = self.dataset(self.cfg["pretrain_data"]["dataset"])
        return clean_indices(self.cfg["pretrain_data"]["num_images"], len(ds.train), self.cfg["seed"])

    def clean_pretrain_images(self) -> np.ndarray:
        return self.dataset(self.cfg["pretrain_data"]["dataset"]).train.images[self._clean_indices()]

    @property
    def poison_dir(self) -> Path:
        return self.dir.poisons

    def clean_encoder_dir(self) -> Path:
        return clean_encoder_dir(self.cfg)

    # -------------------------------------------------------------------------------- craft
    @_holding_run_lock
    def craft(self) -> dict:
        """Target inputs, reference inputs, poisoning inputs; returns the manifest. Where the attacker
        needs a clean encoder (typical reference inputs, a surrogate) it is pre-trained first (all
        ranks under torchrun); rank 0 crafts while the others wait."""
        from .ssl import distributed as D

        if self.dir.manifest.exists():
            self.log(f"craft: reusing {self.poison_dir}")
            return load_poisons(self.poison_dir)[0]
        a, seed, p, dev = self.cfg["attack"], self.cfg["seed"], self.cfg["pretrain"], self.cfg["device"]
        attack = build_attack(a, seed)
        needs_clean = attack.needs_surrogate or a["reference_selection"] == "typical"
        if needs_clean:
            self.check_sizes()  # before the clean encoder trains
        clean = self.pretrain_clean() if needs_clean else None
        if D.current().is_main:
            from .ssl.pretrain import load_backbone

            tasks = self.tasks()
            targets = choose_targets(self.cfg["tasks"], tasks, seed)
            typ = typicality(load_backbone(clean, p), tasks, p["image_size"], dev) if a["reference_selection"] == "typical" else None
            choose_references(targets, tasks, a["num_references"], seed, typ)
            surrogate = load_surrogate(clean.parent / "checkpoint.pt", p, dev) if attack.needs_surrogate else None
            craft(attack, targets, tasks, len(self._clean_indices()), self.out, seed, surrogate, self.log)
        D.barrier()
        return load_poisons(self.poison_dir)[0]

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
            _, poisons = load_poisons(self.poison_dir)
            export_imagefolder(self.clean_pretrain_images(), self._clean_indices(), manifest, poisons, dest)
            self.log(f"export: {len(self._clean_indices())} clean inputs and {len(poisons)} poisoning inputs "
                     f"-> {dest}/unlabeled/ (manifest.json beside it)")
        return dest

    # -------------------------------------------------------------------------------- pre-train
    @contextmanager
    def _cache_lock(self, d: Path):
        """Hold ``<d>.lock`` while the shared clean encoder in ``d`` is looked for and trained: a
        second run that needs the same encoder waits, then reuses it instead of training it again.
        Under torchrun rank 0 holds the lock and the other ranks wait for it at a barrier."""
        from .ssl import distributed as D

        lock = d.parent / f"{d.name}.lock"

        def wait() -> None:
            self.log(f"pretrain clean: another run is training this encoder; waiting for it ({lock})")

        with file_lock(lock, wait) if D.current().is_main else nullcontext():
            D.barrier()
            yield
            D.barrier()

    def pretrain_clean(self) -> Path:
        """The clean encoder (shared cache, trained once per setting)."""
        from .ssl.pretrain import PretrainSet

        d = self.clean_encoder_dir()
        with self._cache_lock(d):
            return pretrain_encoder("clean", lambda: PretrainSet.from_images(self.clean_pretrain_images()),
                                    self.cfg["pretrain"], d, self.cfg["seed"], self.cfg["device"], self.log)

    def pretrain_poisoned(self, defense: Defense) -> Path:
        """The poisoned encoder of this run, on the clean inputs and the crafted poisons, with the
        pre- and in-processing defense (a filter with ``needs_encoder`` gets the clean encoder)."""
        from .ssl.pretrain import PretrainSet, load_backbone

        def data() -> PretrainSet:
            clean = self.clean_pretrain_images()
            _, poisons = load_poisons(self.poison_dir)
            if defense.stage == "pre":
                enc = load_backbone(own, self.cfg["pretrain"]).to(self.cfg["device"]) if own else None
                clean, poisons = filter_inputs(defense, clean, poisons, self.out, self.log, enc)
            return PretrainSet.from_images(clean, poisons)

        own = None
        if not (self.dir.poisoned_encoder / "encoder.pt").exists():
            self.craft()
            own = self.pretrain_clean() if defense.needs_encoder else None  # the defender's clean encoder
        return pretrain_encoder("poisoned", data, defense.adjust_pretrain(dict(self.cfg["pretrain"])),
                                self.dir.poisoned_encoder, self.cfg["seed"], self.cfg["device"], self.log,
                                **defense.training_hooks())

    def defend(self, defense: Defense, encoder: Path, out: Path | None = None) -> Path:
        """Post-processing defense on an encoder (the poisoned one; with ``out``, the clean one as the
        defense's control, into ``out``); the other defenses acted during pre-training."""
        if defense.stage != "post":
            return encoder
        ds = self.dataset(self.cfg["pretrain_data"]["dataset"])
        spare = np.setdiff1d(np.arange(len(ds.train)), self._clean_indices())
        data = DefenderData(self.cfg["pretrain"], self.cfg["seed"], self.cfg["device"], out or self.out, ds.train.images,
                            spare, self.log)
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
        return measure(self.cfg, self.dir, self.tasks, manifest, encoders, snapshots, extra, after, self.log)

    def run(self) -> dict:
        return self.evaluate()


def _is_main() -> bool:
    from .ssl.distributed import current

    return current().is_main
