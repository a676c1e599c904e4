"""One experiment: the stages of the paper's data flow, run in order by :class:`Experiment`.

targets and reference inputs -> poisoning inputs (craft: poisons/, poisons_grid.png)
-> pre-training (the clean encoder in the shared cache, encoders/poisoned/) -> defense
-> downstream -> metrics (metrics.json) -> report (report.md)

Each stage is a function that takes what it needs as arguments and calls no later stage;
:class:`Experiment` holds the run directory, loads the datasets and passes each stage's output
to the next. Each stage reuses what an earlier call finished, so an interrupted run resumes.
"""
from __future__ import annotations

import functools
import json
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable

import numpy as np

from . import config as C
from .attack import Attack, build_attack, choose_references, craft_rng, select_targets
from .attack.export import GRID_LEGEND, load_poisons, save_grid, save_poisons
from .attack.targets import Target
from .data import ImageDataset, load_dataset
from .data.datasets import DEFAULT_CACHE
from .defenses import DefenderData, Defense, build_defense
from .errors import UserError
from .io import check_own_dir, ensure_writable_dir, file_lock, write_json
from .report import format_table, write_report
from .rundir import RunDir, encoder_seconds, write_encoder_seconds


# ---------------------------------------------------------------------------------------------- stages
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
         "reference_selection": attack.reference_selection, attack.name: attack.settings}
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
        f"(rate {len(poisons) / num_clean:.4f}) in {time.time() - t0:.1f}s -> {out / 'poisons'}")


def typicality(encoder, tasks: list[ImageDataset], image_size: int, device: str) -> list[np.ndarray]:
    """Per task, each train input's cosine to its class-mean feature under ``encoder`` (the attacker's
    surrogate: the clean encoder of this configuration, standing for one it pre-trains on its own
    clean data of the same distribution)."""
    from .attack.targets import class_typicality
    from .downstream import extract_features

    out = []
    for ds in tasks:
        f = extract_features(encoder, ds.train.images, image_size, device=device)
        out.append(class_typicality(f.cpu().numpy(), ds.train.labels, ds.num_classes))
    return out


def load_surrogate(checkpoint: Path, p: dict, device: str):
    """The attacker's surrogate for attacks that need one (Witches' Brew): the whole clean model of
    the configuration's method (backbone and heads), from the clean encoder's last checkpoint."""
    from .attack.witches_brew import Surrogate
    from .io import load_torch
    from .ssl.augment import AugmentParams
    from .ssl.methods import build_method

    model = build_method(p)
    model.load_state_dict(load_torch(checkpoint)["model"])
    return Surrogate(model.to(device), AugmentParams.from_config(p), device)


def filter_inputs(defense: Defense, clean: np.ndarray, poisons: list, out: Path, log: Callable[[str], None] = print):
    """Pre-processing defense: judge every pre-training input, keep the ones it passes, and score its
    verdicts against the ground truth (``out/defense.json``). Returns the kept clean inputs and poisons."""
    images = list(clean) + list(poisons)
    truth = np.r_[np.zeros(len(clean), bool), np.ones(len(poisons), bool)]
    report = defense.filter(images)
    keep = ~report.verdicts
    write_json(out / "defense.json", report.to_dict(truth))
    s = report.score(truth)
    log(f"defense {defense.name}: removed {report.removed} of {len(images)} inputs "
        f"(precision {s['precision']:.3f}, recall {s['recall']:.3f}) in {report.seconds:.1f}s")
    return clean[keep[:len(clean)]], [im for im, k in zip(poisons, keep[len(clean):], strict=True) if k]


def pretrain_encoder(name: str, make_data: Callable, p: dict, d: Path, seed: int, device: str,
                     log: Callable[[str], None] = print, **hooks) -> Path:
    """Pre-train an encoder into ``d`` with settings ``p`` on ``make_data()`` (a :class:`PretrainSet`,
    built only when needed); reuses a finished one. Returns its ``encoder.pt``. ``hooks``: an
    in-training defense's (``view_policy``, ``pair_filter``), for :func:`~.ssl.pretrain.pretrain`."""
    from .ssl.pretrain import pretrain

    enc = d / "encoder.pt"
    if enc.exists():
        log(f"pretrain {name}: reusing {enc}")
        return enc
    t0 = time.time()
    data = make_data()
    log(f"pretrain {name}: {len(data)} inputs, {p['epochs']} epochs -> {d}")
    model = pretrain(data, p, d, seed, device, desc=f"pretrain {name}", log=log, **hooks)
    write_seconds(d, time.time() - t0, getattr(model, "timing", None))
    return enc


def write_seconds(d: Path, seconds: float, timing: dict | None) -> None:
    """The encoder's wall seconds in ``d``: :func:`poisonedencoder.rundir.write_encoder_seconds`."""
    write_encoder_seconds(d, seconds, timing)


def pretrain_seconds(d: str | Path) -> float | None:
    """The wall time :func:`pretrain_encoder` recorded for the encoder in ``d``, all calls together
    when it was resumed (None if none was recorded)."""
    return encoder_seconds(d)


# ---------------------------------------------------------------------------------------------- the run
def _holding_run_lock(method):
    """Run the stage while holding the run directory's lock (:meth:`Experiment._run_lock`)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._run_lock():
            return method(self, *args, **kwargs)

    return locked


def clean_encoder_dir(cfg: dict) -> Path:
    """Where the clean encoder of ``cfg`` lies in the shared cache (one per pre-training setting and seed)."""
    cache = Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else DEFAULT_CACHE
    return cache / "encoders" / C.clean_encoder_key(cfg)


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
        pre- and in-processing defense."""
        from .ssl.pretrain import PretrainSet

        def data() -> PretrainSet:
            clean = self.clean_pretrain_images()
            _, poisons = load_poisons(self.poison_dir)
            if defense.stage == "pre":
                clean, poisons = filter_inputs(defense, clean, poisons, self.out, self.log)
            return PretrainSet.from_images(clean, poisons)

        if not (self.dir.poisoned_encoder / "encoder.pt").exists():
            self.craft()
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
        import torch

        from .evaluation import evaluate_task
        from .metrics import summarize, threat_model

        p = self.cfg["pretrain"]
        if p.get("threads"):
            torch.set_num_threads(int(p["threads"]))
        t0 = time.time()
        targets = [Target(**t) for t in manifest["targets"]]
        per_task = [evaluate_task(encoders, snapshots, ds, ti, targets, p, self.cfg["downstream"], self.cfg["seed"],
                                  self.cfg["device"]) for ti, ds in enumerate(self.tasks())]
        metrics = {
            **summarize(per_task),
            "num_poisoning_inputs": manifest["num_poisoning_inputs"],
            "num_clean_inputs": manifest["num_clean_inputs"],
            **threat_model(manifest["num_poisoning_inputs"], manifest["num_clean_inputs"], len(targets)),
            "tasks": per_task,
            **extra,
            "evaluate_seconds": round(time.time() - t0, 1),
            **after,
            "config_fingerprint": C.experiment_fingerprint(self.cfg),
        }
        write_json(self.dir.metrics, metrics)
        write_report(self.dir.report, self.cfg, metrics)
        self.log(format_table(metrics))
        return metrics

    def run(self) -> dict:
        return self.evaluate()


def _is_main() -> bool:
    from .ssl.distributed import current

    return current().is_main
