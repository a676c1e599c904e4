"""One experiment, in stages that share a run directory:

craft      -> poisons/ (PNGs + manifest.json), poisons_grid.png
pretrain   -> clean encoder (shared cache, trained once per setting) and encoders/poisoned/
evaluate   -> metrics.json, report.md

Each stage reuses what an earlier call finished, so an interrupted run resumes.
"""
from __future__ import annotations

import copy
import json
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import config as C
from .attack import build_attack, select_targets
from .defenses import build_defense
from .attack.export import GRID_LEGEND, load_poisons, save_grid, save_poisons, target_box
from .attack.targets import Target
from .data import ImageDataset, load_dataset
from .data.datasets import DEFAULT_CACHE
from .errors import UserError
from .io import ensure_writable_dir, file_lock, write_json, write_text
from .report import format_table, write_report

if TYPE_CHECKING:
    from .ssl.pretrain import PretrainSet

# settings that change where or how fast a run goes, not what it computes
_NOT_IN_FINGERPRINT = ("device", "data_root", "cache_dir", "seeds")  # seeds: the runner splits them into runs
_PRETRAIN_NOT_IN_FINGERPRINT = ("threads", "snapshot_every", "compile", "checkpoint_every")


# keys added after results were recorded: at these values they leave fingerprints (and caches) as they were
_PRETRAIN_OMIT_AT = {"augmentation": "batched", "view_overlap": 0.0, "drop_disagreeing": 0.0}


def pretrain_identity(p: dict, device: str = "cpu") -> dict:
    """The pre-training settings that change what an encoder is (other methods' sections do not).

    ``precision`` enters as resolved on ``device`` (``auto`` is bf16 on one machine and fp32 on
    another: different encoders). ``input_stats`` marks encoders that normalize their input with
    their clean pre-training set's statistics (earlier ones used CIFAR-10's)."""
    from .ssl.methods import METHODS
    from .ssl.precision import resolve_precision

    ident = {k: v for k, v in p.items()
             if k not in _PRETRAIN_NOT_IN_FINGERPRINT and not (k in _PRETRAIN_OMIT_AT and _PRETRAIN_OMIT_AT[k] == v)
             and not (k in METHODS and k != p["algorithm"])}
    ident["precision"] = resolve_precision(p["precision"], device)
    ident["input_stats"] = "pretrain-set"
    return ident


def experiment_fingerprint(cfg: dict) -> str:
    from .attack import ATTACKS

    c = {k: v for k, v in cfg.items() if k not in _NOT_IN_FINGERPRINT}
    c["pretrain"] = pretrain_identity(c["pretrain"], cfg["device"])
    c["attack"] = {k: v for k, v in c["attack"].items() if not (k in ATTACKS and k != c["attack"]["name"])}
    d = c.pop("defense", {"name": "none"})
    if d["name"] != "none":  # undefended runs keep the fingerprints they had before defenses existed
        c["defense"] = {"name": d["name"], **({d["name"]: d[d["name"]]} if d["name"] in d else {})}
    return C.fingerprint(c)


class Experiment:
    def __init__(self, cfg: dict, out: str | Path, log=print):
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.cache = Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else DEFAULT_CACHE
        self._datasets: dict[str, ImageDataset] = {}
        self._check_out_dir()

    # ------------------------------------------------------------------ bookkeeping
    def _check_out_dir(self) -> None:
        """Before any work: the run directory and the cache are writable folders, and the run
        directory holds no run of another configuration."""
        ensure_writable_dir(self.out, "run directory (--out)")
        ensure_writable_dir(self.cache, "cache directory (--cache-dir)")
        fp = experiment_fingerprint(self.cfg)
        stamp = self.out / ".fingerprint"
        finished = [self.out / "poisons" / "manifest.json", self.out / "encoders", self.out / "metrics.json"]
        if stamp.exists() and stamp.read_text().strip() != fp and any(f.exists() for f in finished):
            raise UserError(f"{self.out} holds a run with a different configuration; choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        if _is_main():
            write_text(stamp, fp + "\n")
            write_text(self.out / "config.yaml", C.dump(self.cfg))

    def dataset(self, spec: str) -> ImageDataset:
        if spec not in self._datasets:
            self._datasets[spec] = load_dataset(spec, self.cfg["pretrain"]["image_size"], self.cfg["data_root"],
                                                self.cache, progress=True)
        return self._datasets[spec]

    def tasks(self) -> list[ImageDataset]:
        return [self.dataset(t["dataset"]) for t in self.cfg["tasks"]]

    def clean_pretrain_images(self) -> np.ndarray:
        ds = self.dataset(self.cfg["pretrain_data"]["dataset"])
        return ds.train.images[self._clean_indices()]

    def _clean_indices(self) -> np.ndarray:
        """Which train-split inputs the clean pre-training set holds."""
        ds = self.dataset(self.cfg["pretrain_data"]["dataset"])
        n, total = self.cfg["pretrain_data"]["num_images"], len(ds.train)
        if n is None or n >= total:
            return np.arange(total)
        return np.sort(np.random.default_rng([self.cfg["seed"], 0]).choice(total, size=n, replace=False))

    # ------------------------------------------------------------------ stages
    @property
    def poison_dir(self) -> Path:
        return self.out / "poisons"

    def craft(self) -> dict:
        """Select target inputs and reference inputs, build and export the poisoning inputs.

        Under torchrun, rank 0 crafts while the others wait (after all ranks trained the clean
        surrogate encoder together, where typical reference inputs need it)."""
        from .ssl import distributed as D

        if (self.poison_dir / "manifest.json").exists():
            self.log(f"craft: reusing {self.poison_dir}")
            return load_poisons(self.poison_dir)[0]
        if D.current().active:
            if self.cfg["attack"]["reference_selection"] == "typical":
                self.pretrain("clean")
            if D.current().is_main:
                self._craft()
            D.barrier()
            return load_poisons(self.poison_dir)[0]
        return self._craft()

    def _craft(self) -> dict:
        t0 = time.time()
        tasks = self.tasks()
        targets: list[Target] = []
        for i, (tcfg, ds) in enumerate(zip(self.cfg["tasks"], tasks, strict=True)):
            targets += select_targets(ds, i, tcfg["num_targets"], tcfg["targets"], self.cfg["seed"])
        num_clean = len(self.clean_pretrain_images())
        a = self.cfg["attack"]
        attack = build_attack(a, self.cfg["seed"])
        typicality = self.typicality(tasks) if a["reference_selection"] == "typical" else None
        if a["name"] != "poisonedencoder":
            # every attack of a configuration uses the reference inputs that PoisonedEncoder picks
            build_attack({**a, "name": "poisonedencoder"}, self.cfg["seed"]).craft(targets, tasks, num_clean, typicality)
        t_craft = time.time()
        poisons = attack.craft(targets, tasks, num_clean, typicality, self.surrogate)
        t_craft = time.time() - t_craft
        extra = {"attack": {k: v for k, v in a.items() if not (isinstance(v, dict) and k != a["name"])},
                 "num_clean_inputs": num_clean, "poisoning_rate": len(poisons) / num_clean,
                 "class_names": [ds.classes for ds in tasks]}
        if getattr(attack, "matching", None):
            extra["gradient_matching_loss"] = [round(x, 4) for x in attack.matching]
        # timings apart from the manifest, so that crafting twice writes the same manifest bytes
        write_json(self.poison_dir / "timing.json", {"craft_seconds": round(t_craft, 2),
                                                     "craft_seconds_per_poison": round(t_craft / max(1, len(poisons)), 4)})
        save_poisons(poisons, targets, self.poison_dir, extra)
        shown = poisons[:: max(1, len(poisons) // 48)]
        save_grid([p.image for p in shown], self.out / "poisons_grid.png", labels=[f"T{p.target_id}" for p in shown],
                  boxes=[target_box(p, a["gap"]) for p in shown], legend=GRID_LEGEND)
        self.log(f"craft: {len(poisons)} poisoning inputs for {len(targets)} target inputs "
                 f"(rate {len(poisons) / num_clean:.4f}) in {time.time() - t0:.1f}s -> {self.poison_dir}")
        return load_poisons(self.poison_dir)[0]

    def surrogate(self):
        """The attacker's surrogate for attacks that need one (Witches' Brew): the whole clean
        model of this configuration's method (backbone and heads), from the shared clean encoder's
        last checkpoint."""
        from .attack.witches_brew import Surrogate
        from .io import load_torch
        from .ssl.augment import AugmentParams
        from .ssl.methods import build_method

        p = self.cfg["pretrain"]
        self.pretrain("clean")
        model = build_method(p)
        model.load_state_dict(load_torch(self.clean_encoder_dir() / "checkpoint.pt")["model"])
        return Surrogate(model.to(self.cfg["device"]), AugmentParams.from_config(p), self.cfg["device"])

    def typicality(self, tasks: list[ImageDataset]) -> list:
        """Per task, each train input's cosine to its class-mean feature under a surrogate encoder.

        The surrogate is the clean encoder of this configuration (the attacker pre-trains its
        own encoder on clean data of the same distribution; here it is the shared clean one).
        """
        from .attack.targets import class_typicality
        from .downstream import extract_features
        from .ssl.pretrain import load_backbone

        enc = load_backbone(self.pretrain("clean")["clean"], self.cfg["pretrain"])
        out = []
        for ds in tasks:
            f = extract_features(enc, ds.train.images, self.cfg["pretrain"]["image_size"], device=self.cfg["device"])
            out.append(class_typicality(f.cpu().numpy(), ds.train.labels, ds.num_classes))
        return out

    def clean_encoder_dir(self) -> Path:
        key = C.fingerprint({"pretrain_data": self.cfg["pretrain_data"], "seed": self.cfg["seed"],
                             "pretrain": pretrain_identity(self.cfg["pretrain"], self.cfg["device"])})
        return self.cache / "encoders" / key

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

    def pretrain(self, which: str = "both") -> dict[str, Path]:
        """Pre-train the clean encoder (shared cache) and/or the poisoned one (this run)."""
        from .ssl.pretrain import PretrainSet, pretrain

        paths = {}
        clean = self.clean_pretrain_images()
        jobs = []
        if which in ("both", "clean"):
            jobs.append(("clean", self.clean_encoder_dir(), lambda: PretrainSet.from_images(clean)))
        defense = build_defense(self.cfg["defense"])
        p_clean = self.cfg["pretrain"]
        if which in ("both", "poisoned"):
            def poisoned_set():
                self.craft()
                _, imgs = load_poisons(self.poison_dir)
                if defense.stage == "pre":
                    return self._filtered(defense, clean, imgs)
                return PretrainSet.from_images(clean, imgs)
            jobs.append(("poisoned", self.out / "encoders" / "poisoned", poisoned_set))
        for name, d, make in jobs:
            p = p_clean if name == "clean" else defense.adjust_pretrain(dict(p_clean))  # in-processing defenses
            enc = d / "encoder.pt"
            with self._cache_lock(d) if name == "clean" else nullcontext():  # the cache is shared between runs
                if not enc.exists():
                    t0 = time.time()
                    data = make()
                    self.log(f"pretrain {name}: {len(data)} inputs, {p['epochs']} epochs -> {d}")
                    pretrain(data, p, d, self.cfg["seed"], self.cfg["device"], desc=f"pretrain {name}", log=self.log)
                    write_text(d / "seconds.txt", f"{time.time() - t0:.1f}\n")
                else:
                    self.log(f"pretrain {name}: reusing {enc}")
            paths[name] = enc
        if "poisoned" in paths and defense.stage == "post":
            paths["poisoned"] = self._finetune(defense, paths["poisoned"].parent)
        return paths

    def _filtered(self, defense, clean: np.ndarray, poisons: list) -> PretrainSet:
        """Pre-processing defense: judge every pre-training input, keep the ones it passes, and
        score its verdicts against the ground truth (defense.json)."""
        from .ssl.pretrain import PretrainSet

        images = list(clean) + list(poisons)
        truth = np.r_[np.zeros(len(clean), bool), np.ones(len(poisons), bool)]
        report = defense.filter(images)
        keep = ~report.verdicts
        write_json(self.out / "defense.json", report.to_dict(truth))
        s = report.score(truth)
        self.log(f"defense {defense.name}: removed {report.removed} of {len(images)} inputs "
                 f"(precision {s['precision']:.3f}, recall {s['recall']:.3f}) in {report.seconds:.1f}s")
        kept_clean = clean[keep[:len(clean)]]
        kept_poisons = [im for im, k in zip(poisons, keep[len(clean):], strict=True) if k]
        return PretrainSet.from_images(kept_clean, kept_poisons)

    def _finetune(self, defense, poisoned_dir: Path) -> Path:
        """Post-processing defense: fine-tune the poisoned encoder on the defender's clean inputs
        (train-split inputs that pre-training did not use)."""
        from .defenses.base import DefenseReport
        from .ssl.pretrain import PretrainSet, pretrain

        d = self.out / "encoders" / "finetuned"
        s = defense.settings
        if not (d / "encoder.pt").exists():
            t0 = time.time()
            ds = self.dataset(self.cfg["pretrain_data"]["dataset"])
            unused = np.setdiff1d(np.arange(len(ds.train)), self._clean_indices())
            if s["num_clean"] > len(unused):
                raise UserError(f"defense.finetune.num_clean {s['num_clean']} exceeds the {len(unused)} train inputs "
                                "that pre-training did not use")
            idx = np.sort(np.random.default_rng([self.cfg["seed"], 5]).choice(unused, s["num_clean"], replace=False))
            p = dict(self.cfg["pretrain"], epochs=s["epochs"], batch_size=min(self.cfg["pretrain"]["batch_size"],
                                                                                 s["num_clean"]))
            self.log(f"defense finetune: {s['num_clean']} clean inputs, {s['epochs']} epochs -> {d}")
            pretrain(PretrainSet.from_images(ds.train.images[idx]), p, d, self.cfg["seed"], self.cfg["device"],
                     desc="finetune", log=self.log, init=poisoned_dir / "checkpoint.pt")
            report = DefenseReport(defense.name, "post", time.time() - t0, clean_data_used=s["num_clean"],
                                   details={"epochs": s["epochs"]})
            write_json(self.out / "defense.json", report.to_dict())
        return d / "encoder.pt"

    def _downstream(self, enc, ds, tr_idx, seed_task: int):
        """Train the downstream classifier on ``enc``'s features; return test predictions, features and
        the test inputs' logits (on the CPU)."""
        from .downstream import extract_features, logits, train_classifier

        p, d, dev = self.cfg["pretrain"], self.cfg["downstream"], self.cfg["device"]
        ftr = extract_features(enc, ds.train.images[tr_idx], p["image_size"], device=dev)
        fte = extract_features(enc, ds.test.images, p["image_size"], device=dev)
        clf = train_classifier(ftr, ds.train.labels[tr_idx], ds.num_classes, d["classifier"], d["epochs"],
                               d["lr"], d["batch_size"], self.cfg["seed"] + seed_task, d["knn_k"], d["knn_temperature"])
        lg = logits(clf, fte)
        return lg.argmax(1).numpy(), ftr.cpu(), fte.cpu(), lg

    def evaluate(self) -> dict:
        """Downstream classifiers on both encoders; CA, PA, ASR, clean_ASR, cosines."""
        import torch

        from .metrics import (accuracy, attack_success_rate, class_means, margin_summary, target_class_cosine,
                              target_class_scores)
        from .stats import mean_of_rates, rate
        from .ssl.pretrain import load_backbone

        manifest = self.craft()
        paths = self.pretrain("both")
        if not _is_main():
            return {}  # under torchrun, rank 0 evaluates
        p, d = self.cfg["pretrain"], self.cfg["downstream"]
        if p.get("threads"):
            torch.set_num_threads(int(p["threads"]))
        encoders = {k: load_backbone(v, p) for k, v in paths.items()}
        snapshots = sorted((self.out / "encoders" / "poisoned" / "snapshots").glob("epoch_*.pt"))
        targets = [Target(**t) for t in manifest["targets"]]
        tasks = self.tasks()
        per_task = []
        t0 = time.time()
        for ti, ds in enumerate(tasks):
            tt = [t for t in targets if t.task == ti]
            rng = np.random.default_rng([self.cfg["seed"], ti, 3])
            tr_idx = np.arange(len(ds.train))
            if d["num_train"] is not None and d["num_train"] < len(tr_idx):
                tr_idx = np.sort(rng.choice(len(tr_idx), size=d["num_train"], replace=False))
            target_idx = np.array([t.test_index for t in tt], dtype=int)
            test_mask = np.ones(len(ds.test), bool)
            test_mask[target_idx] = False  # CA / PA are measured on non-target inputs
            tcls = np.array([t.target_class for t in tt], dtype=int)
            tcls_true = np.array([t.true_class for t in tt], dtype=int)
            res = {"dataset": ds.name, "num_classes": ds.num_classes, "num_test_inputs": int(test_mask.sum())}
            preds, cos, cos_true, scores, intervals = {}, {}, {}, {}, {}
            for name, enc in encoders.items():
                pred, ftr, fte, lg = self._downstream(enc, ds, tr_idx, ti)
                res["CA" if name == "clean" else "PA"] = accuracy(pred[test_mask], ds.test.labels[test_mask])
                intervals["CA" if name == "clean" else "PA"] = rate(
                    int((pred[test_mask] == ds.test.labels[test_mask]).sum()), int(test_mask.sum()))
                preds[name] = pred[target_idx]
                res["clean_ASR" if name == "clean" else "ASR"] = attack_success_rate(preds[name], tcls) if len(tt) else None
                intervals["clean_ASR" if name == "clean" else "ASR"] = rate(int((preds[name] == tcls).sum()), len(tt))
                scores[name] = target_class_scores(lg[target_idx], tcls)
                means = class_means(ftr, ds.train.labels[tr_idx], ds.num_classes)
                center = ftr.mean(0)
                cos[name] = target_class_cosine(fte[target_idx], means, tcls, center) if len(tt) else []
                cos_true[name] = target_class_cosine(fte[target_idx], means, tcls_true, center) if len(tt) else []
            if snapshots:
                res["over_training"] = []
                for snap in snapshots:
                    pred, _, _, _ = self._downstream(load_backbone(snap, p), ds, tr_idx, ti)
                    res["over_training"].append({"epoch": int(snap.stem.split("_")[1]),
                                                 "PA": accuracy(pred[test_mask], ds.test.labels[test_mask]),
                                                 "ASR": attack_success_rate(pred[target_idx], tcls) if len(tt) else None,
                                                 "intervals": {"PA": rate(int((pred[test_mask] == ds.test.labels[test_mask]).sum()),
                                                                          int(test_mask.sum())),
                                                               "ASR": rate(int((pred[target_idx] == tcls).sum()), len(tt))}})
                res["over_training"].append({"epoch": p["epochs"], "PA": res["PA"], "ASR": res["ASR"],
                                             "intervals": {"PA": intervals["PA"], "ASR": intervals["ASR"]}})
            res["targets"] = [{"test_index": t.test_index, "true_class": t.true_class, "target_class": t.target_class,
                               "true_class_name": ds.classes[t.true_class], "target_class_name": ds.classes[t.target_class],
                               "clean_prediction": int(preds["clean"][k]), "poisoned_prediction": int(preds["poisoned"][k]),
                               "clean_cosine": cos["clean"][k], "poisoned_cosine": cos["poisoned"][k],
                               "clean_cosine_true_class": cos_true["clean"][k],
                               "poisoned_cosine_true_class": cos_true["poisoned"][k],
                               **{f"{e}_{m}": scores[e][m][k] for e in ("clean", "poisoned")
                                  for m in ("target_prob", "target_rank", "margin")}}
                              for k, t in enumerate(tt)]
            res["intervals"] = intervals
            res["margins"] = margin_summary(res["targets"])
            res["mean_cosine_clean"] = float(np.mean(cos["clean"])) if tt else None
            res["mean_cosine_poisoned"] = float(np.mean(cos["poisoned"])) if tt else None
            per_task.append(res)
        all_t = [t for r in per_task for t in r["targets"]]
        metrics = {
            "CA": float(np.mean([r["CA"] for r in per_task])),
            "PA": float(np.mean([r["PA"] for r in per_task])),
            "ASR": float(np.mean([t["poisoned_prediction"] == t["target_class"] for t in all_t])),
            "clean_ASR": float(np.mean([t["clean_prediction"] == t["target_class"] for t in all_t])),
            "num_targets": len(all_t),
            # counts and 95% intervals of the four rates (Wilson; CA / PA of several tasks: their mean)
            "intervals": {"CA": mean_of_rates([r["intervals"]["CA"] for r in per_task]),
                          "PA": mean_of_rates([r["intervals"]["PA"] for r in per_task]),
                          "ASR": rate(sum(t["poisoned_prediction"] == t["target_class"] for t in all_t), len(all_t)),
                          "clean_ASR": rate(sum(t["clean_prediction"] == t["target_class"] for t in all_t), len(all_t))},
            # per-target pull toward the target class, on both encoders: means with t intervals over targets
            "margins": margin_summary(all_t),
            "num_poisoning_inputs": manifest["num_poisoning_inputs"],
            "num_clean_inputs": manifest["num_clean_inputs"],
            "poisoning_rate": manifest["poisoning_rate"],
            "tasks": per_task,
            "encoders": {k: str(v) for k, v in paths.items()},
            "evaluate_seconds": round(time.time() - t0, 1),
            "defense": (json.loads((self.out / "defense.json").read_text()) if (self.out / "defense.json").exists()
                        else {"name": self.cfg["defense"]["name"]}),
            "config_fingerprint": experiment_fingerprint(self.cfg),
        }
        write_json(self.out / "metrics.json", metrics)
        write_report(self.out / "report.md", self.cfg, metrics)
        self.log(format_table(metrics))
        return metrics

    def run(self) -> dict:
        self.craft()
        self.pretrain("both")
        return self.evaluate()


def _is_main() -> bool:
    from .ssl.distributed import current

    return current().is_main


def override_config(cfg: dict, **sections) -> dict:
    out = copy.deepcopy(cfg)
    for k, v in sections.items():
        out[k] = v
    return out
