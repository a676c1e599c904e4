"""One experiment: the stages of the paper's data flow, run in order by :class:`Experiment`.

targets and reference inputs -> poisoning inputs (craft: poisons/, poisons_grid.png)
-> pre-training (the clean encoder in the shared cache, encoders/poisoned/) -> defense
-> downstream -> metrics (metrics.json) -> report (report.md)

Each stage is a function of :mod:`.stages` that takes what it needs as arguments and calls no
later stage; :class:`Experiment` holds the run directory, loads the datasets and passes each stage's output
to the next. Each stage reuses what an earlier call finished, so an interrupted run resumes.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import pretraining as P
from ..attack.export import load_poisons
from ..config.files import dump
from ..data.datasets import DEFAULT_CACHE
from ..defenses import Defense, build_defense
from ..config.fingerprints import experiment_fingerprint
from ..core.folders import check_own_dir, ensure_writable_dir
from .rundata import RunData, RunLock, holding_run_lock
from .rundir import RunDir
from .stages import (
    choose_targets,
    clean_encoder_dir,
    clean_indices,
    craft,
    craft_run,
    filter_inputs,
    load_surrogate,
    measure,
    pretrain_encoder,
    pretrain_seconds,
    typicality,
    write_seconds,
)

__all__ = ["Experiment", "choose_targets", "clean_encoder_dir", "clean_indices", "craft", "craft_run", "filter_inputs",
           "load_surrogate", "measure", "pretrain_encoder", "pretrain_seconds", "typicality", "write_seconds"]


# ---------------------------------------------------------------------------------------------- the run
class Experiment:
    """The run directory ``out`` of configuration ``cfg``, and the stages in order. Each method runs
    the stages that its result needs (``evaluate``: all of them), reusing finished ones. ``data``
    (:class:`~.rundata.RunData`) holds the datasets and the clean pre-training inputs."""

    def __init__(self, cfg: dict, out: str | Path, log=print):
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.dir = RunDir(self.out)
        self.cache = Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else DEFAULT_CACHE
        self.data = RunData(cfg, self.cache)
        self._run_lock = RunLock(self.dir, experiment_fingerprint(cfg), self._claim, log)
        self._check_out_dir()

    def _check_out_dir(self) -> None:
        """Before any work: the run directory and the cache are writable folders, and the run
        directory is this run's (:meth:`_claim`, under the run's lock)."""
        check_own_dir(self.out, "run directory (--out)")
        ensure_writable_dir(self.out, "run directory (--out)")
        ensure_writable_dir(self.cache, "cache directory (--cache-dir)")
        with self._run_lock():
            pass

    def _claim(self) -> None:
        """Under the run's lock, each time it is taken: the folder holds no run of another
        configuration; it is stamped with this one."""
        fp = self._run_lock.fingerprint
        self.dir.check_own(fp)
        if _is_main() and not self.dir.finished(fp):  # a finished run's config.yaml says what it ran with
            self.dir.write_stamp(fp, dump(self.cfg))

    def check_sizes(self) -> None:
        """:meth:`~.rundata.RunData.check_sizes` with this run's defense, before any training."""
        self.data.check_sizes(build_defense(self.cfg["defense"]))

    # -------------------------------------------------------------------------------- craft
    @holding_run_lock
    def craft(self) -> dict:
        """Target inputs, reference inputs, poisoning inputs (:func:`~.stages.craft_run`); returns the manifest."""
        if self.dir.manifest.exists():
            self.log(f"craft: reusing {self.dir.poisons}")
        else:
            craft_run(self.cfg, self.data, self.dir.path, self.pretrain_clean, self.check_sizes, self.log)
        return load_poisons(self.dir.poisons)[0]

    @holding_run_lock
    def export_imagefolder(self, dest: str | Path) -> Path:
        """Craft (or reuse the craft) and write the pre-training set, clean inputs and poisoning inputs,
        as one plain image folder ``dest/unlabeled/*.png`` with the manifest in ``dest/manifest.json``
        (:func:`~poisonedencoder.attack.export.export_imagefolder`), for a pre-training pipeline of
        one's own. No defense is applied: the folder is what the victim would collect."""
        from ..attack.export import check_export_dir, export_imagefolder

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
        return P.clean_encoder(self.cfg, self.data, self.log)

    def pretrain_poisoned(self, defense: Defense) -> Path:
        """The poisoned encoder, defended before and during pre-training (:func:`~.pretraining.poisoned_encoder`);
        a filter that scores with an encoder gets the clean one or one on the unfiltered data."""
        own = None
        if not (self.dir.poisoned_encoder / "encoder.pt").exists():
            self.craft()
            if defense.needs_encoder:
                own = (self.pretrain_clean() if defense.encoder_source == "clean"
                       else P.unfiltered_encoder(self.cfg, self.data, self.dir, self.log))
        return P.poisoned_encoder(self.cfg, self.data, self.dir, defense, own, self.log)

    def defend(self, defense: Defense, encoder: Path, out: Path | None = None) -> Path:
        """The post-processing defense on the poisoned encoder (with ``out``: on the clean one, as its control)."""
        return P.defended(self.cfg, self.data, defense, encoder, out or self.out, self.log)

    @holding_run_lock
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
    @holding_run_lock
    def evaluate(self) -> dict:
        """Downstream classifiers on both encoders; CA, PA, ASR, clean_ASR, cosines -> metrics.json, report.md."""
        from ..ssl.pretrain import load_backbone

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

    @holding_run_lock
    def evaluate_encoders(self, poisoned, clean=None, files: dict | None = None) -> dict:
        """Downstream classifiers on encoders trained anywhere, for this run's target inputs (crafted
        here, or reused): ``poisoned`` and optionally ``clean`` are modules that take images in [0, 1]
        and return features (:func:`poisonedencoder.experiment.external.load_encoder` makes one from a file).
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
    from ..ssl.distributed import current

    return current().is_main
