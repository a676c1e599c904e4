"""The settings ("arms") the claims table measures, each a variation of one recipe, and how to run them.

Every arm is the recipe (a config file; by default :func:`default_recipe`) with a few overrides,
run over the recipe's seeds into ``OUT/arms/<name>/`` with the stages of
:class:`~poisonedencoder.studies.seeds.SeedRuns`: finished stages are reused, so an interrupted table
resumes, and arms that share pre-training settings share the cached clean encoder of each seed.
Arms with the recipe's seeds and tasks attack the same target inputs with the same reference
inputs (both depend on the seed only), so any two of them pair.

``one_per_run`` is the exception: each target input of the recipe's run attacked alone, in a run
of its own with the same rate per target input (so poisoning inputs ``num_targets`` times fewer),
with the same reference inputs (passed explicitly) and the recipe run's clean encoder.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ...data.datasets import missing
from ...core.errors import UserError
from .sizes import train_size, train_size_here

PER_TARGET_RATES = (0.005, 0.01, 0.02, 0.03, 0.05)
"""Rates per target input of the ASR-against-rate row (the recipe's own rate is one of its points)."""
SHARED = "<shared-datasets>"
"""What a recorded config.yaml writes for the data root of the machine that ran it (``--data-root``,
formerly ``--shared-datasets``: the placeholder keeps the older name, so that records of either
time read alike)."""
UNKNOWN = "?"
"""A size that follows from the recipe's train split, in an arm's label and overrides, where the
plan is read without the dataset (:func:`train_size_here`)."""


def default_recipe() -> Path:
    """The recipe ``claims`` varies when given none: ``digits_works.yaml``, shipped inside the package
    (``poisonedencoder/config/recipes/``; ``configs/digits_works.yaml`` in a checkout links to it), so that
    it is found from any working directory and in any install."""
    from importlib.resources import files

    return Path(str(files("poisonedencoder.config") / "recipes" / "digits_works.yaml"))


@dataclass(frozen=True)
class Arm:
    name: str
    label: str                              # what the arm is, for the table
    overrides: tuple[str, ...] = ()         # ``--set`` overrides on the recipe
    one_per_run: bool = False               # each target input of the recipe's runs in a run of its own
    needs: tuple[str, ...] = ()              # datasets it reads beyond the recipe's (to say why it cannot run)
    groups: tuple[str, ...] = ()             # the groups ``--only`` may name it by (``race``)


def recipe_rates(cfg: dict) -> tuple[float, int]:
    """The recipe's rate per target input and its target inputs per run (all tasks)."""
    n = sum(len(t["targets"]) if t["targets"] else t["num_targets"] for t in cfg["tasks"])
    return cfg["attack"]["poisoning_rate"] / n, n


def large_crops_scale(cfg: dict) -> float:
    """The smallest crop scale of the ``large_crops`` arm: the defense's default 0.4 where the recipe
    crops smaller, else halfway from the recipe's smallest crop to the whole input (digits' recipe
    crops at 0.4 or more: 0.7, as docs/RESULTS.md's digits defenses)."""
    lo = float(cfg["pretrain"]["crop_scale"][0])
    return 0.4 if lo < 0.4 else round((lo + 1) / 2, 2)


LARGE_CROPS = 0.7
"""The smallest crop of a second ``large_crops`` arm (``defense_large_crops_0.7``), planned where
:func:`large_crops_scale` is another (the defense's default 0.4, below the recipe's crops, left
ASR as it was on CIFAR-10): the digits recipe's own scale."""


FINETUNE_SHARE = 0.25
"""Fine-tuning needs clean inputs that pre-training did not use: where the recipe pre-trains on its
whole train split (digits), the fine-tuning arms pre-train on the other 75% and leave this share."""


def finetune_arms(cfg: dict, num_train: int | None) -> list[Arm]:
    """The post-processing defense and its two references: PoisonedEncoder without a defense on the
    same (smaller) pre-training set, and fine-tuning with the control (the clean encoder fine-tuned
    on the same clean inputs, so the data's gain is credited to both). Two clean-set sizes
    (:data:`UNKNOWN` where ``num_train`` is None: the train split's size is not known here)."""
    n_clean = cfg["pretrain_data"]["num_images"] or num_train
    if num_train is None:  # read without the dataset: a recipe's own set is taken as leaving room (as cifar10_gpu's)
        pre, spare, small = [] if n_clean else [f"pretrain_data.num_images={UNKNOWN}"], UNKNOWN, UNKNOWN
        n_clean = n_clean or UNKNOWN
    else:
        if num_train - n_clean >= 100:
            pre, spare = [], num_train - n_clean
        else:
            n_clean = int(round(num_train * (1 - FINETUNE_SHARE)))
            pre, spare = [f"pretrain_data.num_images={n_clean}"], num_train - n_clean
        small = max(1, spare // 4)
    return [Arm("finetune_none", f"no defense, {n_clean} clean pre-training inputs (the fine-tuning rows' reference)",
                tuple(pre)),
            Arm("defense_finetune", f"defense finetune on {spare} clean inputs, with the control",
                (*pre, "defense.name=finetune", f"defense.finetune.num_clean={spare}", "defense.finetune.control=true")),
            Arm("defense_finetune_small", f"defense finetune on {small} clean inputs, with the control",
                (*pre, "defense.name=finetune", f"defense.finetune.num_clean={small}", "defense.finetune.control=true"))]


PAPER_DATASETS = ("eurosat", "facemask")
"""The paper's datasets the table runs the recipe on, each at 16x16 and 32x32 (arm ``<name>_<px>px``),
read from under the data root (:func:`~poisonedencoder.data.location.data_root`)."""
DATASET_ARMS = {f"{ds}_{px}px": (ds, px) for ds in PAPER_DATASETS for px in (16, 32)}


def plan(cfg: dict, num_train: int | None = None, reading: bool = False) -> list[Arm]:
    """Every arm of the claims table for the resolved recipe ``cfg``, in the order they run
    (the rows a user most needs first; the costliest last), whatever this machine holds (an arm
    whose data are not under the data root is in the plan: :func:`missing_data` says why it cannot
    run here, and its finished runs are still read). ``num_train``: the size of the pre-training
    dataset's train split (read from the dataset when not given). ``reading``: the plan of a
    command that runs nothing (``--table``, ``--list``): the size is read only where that needs no
    download and writes nothing (:func:`train_size_here`), else the sizes that follow from it are
    :data:`UNKNOWN`."""
    if num_train is None:
        num_train = train_size_here(cfg) if reading else train_size(cfg)
    per_target, n = recipe_rates(cfg)
    arms = [Arm("poisonedencoder", f"PoisonedEncoder, the recipe ({n} targets per run)"),
            Arm("one_per_run", "PoisonedEncoder, one target per run", one_per_run=True),
            Arm("icp", "ICP (image-only baseline)", ("attack.name=icp",)),
            Arm("duplication", "target duplication (naive floor)", ("attack.name=duplication",)),
            Arm("witches_brew", "Witches' Brew, default budget (40 steps, 1 restart)", ("attack.name=witches_brew",))]
    for r in PER_TARGET_RATES:
        if abs(r - per_target) > 1e-9:
            arms.append(Arm(f"rate_{r:g}", f"PoisonedEncoder at {100 * r:g}% per target", (f"attack.poisoning_rate={r * n:.6g}",)))
    for m in ("mocov2", "byol", "simsiam"):
        arms.append(Arm(f"method_{m}", f"pre-trained with {m}", (f"pretrain.algorithm={m}",)))
    for d in ("part_hash", "large_crops", "overlapping_views", "drop_disagreeing"):
        if d == "large_crops":  # above the recipe's own smallest crop, or the defense changes nothing
            ms = large_crops_scale(cfg)
            arms.append(Arm(f"defense_{d}", f"defense {d} (crops of at least {ms:g} of the input)",
                            (f"defense.name={d}", f"defense.large_crops.min_scale={ms:g}")))
        else:
            arms.append(Arm(f"defense_{d}", f"defense {d}", (f"defense.name={d}",)))
    if large_crops_scale(cfg) != LARGE_CROPS:
        arms.append(Arm(f"defense_large_crops_{LARGE_CROPS:g}", f"defense large_crops (crops of at least {LARGE_CROPS:g} of the input)",
                        ("defense.name=large_crops", f"defense.large_crops.min_scale={LARGE_CROPS:g}")))
    arms += finetune_arms(cfg, num_train)
    base = cfg["pretrain_data"]["dataset"]
    if base == "digits":  # a second downstream task from the same pre-training
        arms.append(Arm("two_tasks", "targets in two downstream tasks (digits, Fashion-MNIST), one pre-training",
                        ('tasks=[{dataset: digits, num_targets: 5}, {dataset: fashion-mnist, num_targets: 5}]', "downstream.num_train=5000"),
                        needs=("fashion-mnist",)))
    n_clean = cfg["pretrain_data"]["num_images"] or 1347
    for name, (ds, px) in DATASET_ARMS.items():  # planned whatever this machine holds: their records are read
        arms.append(Arm(name, f"the recipe on {ds} at {px}x{px}", (
            f"pretrain_data.dataset={ds}", f"pretrain_data.num_images={n_clean}",
                f"tasks=[{{dataset: {ds}, num_targets: {n}}}]", f"pretrain.image_size={px}", "downstream.num_train=5000"),
                needs=(ds,)))
    # Its paper's 240 steps, 1 of its 8 restarts: one restart of 240 steps took 571 s of crafting on 2 cores
    # (commit 67443ac), so 8 would take about 76 minutes per run, 3.8 hours for the 3 seeds
    arms.append(Arm("witches_brew_paper", "Witches' Brew, its paper's 240 steps, 1 restart (its paper: 8)",
                    ("attack.name=witches_brew", "attack.witches_brew.steps=240", "attack.witches_brew.restarts=1")))
    reused = set(RACE_REUSED.values())
    arms = [replace(a, groups=(*a.groups, RACE)) if a.name in reused else a for a in arms]
    return arms + race_arms(cfg, num_train)


RACE = "race"
"""The group of the arms-race arms: attacker variants x defenses (``--only race``)."""
TARGET_VARIATION = 0.5
"""The ``varied`` attacker's ``target_variation``: the part_hash filter alone (no training) finds
0.15 [0.13, 0.18] of its poisoning inputs on the digits recipe, 0.49 [0.47, 0.52] at 0.25 (3 seeds;
docs/CLAIMS.md), while each poisoning input keeps at least 3/4 of the target input's area."""
RACE_VARIANTS = {"paper": (), "square": ("attack.poisonedencoder.shape=square",),
                 "varied": (f"attack.poisonedencoder.target_variation={TARGET_VARIATION:g}",),
                 "square_varied": ("attack.poisonedencoder.shape=square",
                                   f"attack.poisonedencoder.target_variation={TARGET_VARIATION:g}")}
RACE_DEFENSES = ("none", "aspect_ratio", "part_hash", "crop_disagreement", "large_crops",
                 "crop_disagreement_fpr", "crop_disagreement_fpr_unfiltered")
RACE_FPR = 0.05
"""crop_disagreement's ``fpr`` in the race's columns without the oracle (``crop_disagreement_fpr``,
``crop_disagreement_fpr_unfiltered``): the defender accepts to lose 5% of its clean inputs (about 67
of digits' 1,347 where the scores' bulk is close to normal), as much as the paper's recipe lets it
lose without a measured cost in PA (docs/CLAIMS.md)."""
FPR_DEFENSES = RACE_DEFENSES[-2:]
"""The race's columns without the oracle (crop_disagreement with ``fpr``: the clean encoder, an encoder
pre-trained on the unfiltered set)."""
FPR_VARIANTS = ("paper", "varied")
"""The attackers measured against the defenses without the oracle: those that still poison without
a defense (the square ones flip 0/30 without one: a defense has nothing to reduce)."""
RACE_REUSED = {("paper", "none"): "poisonedencoder", ("paper", "part_hash"): "defense_part_hash",
               ("paper", "large_crops"): "defense_large_crops"}
"""The cells of the arms race that arms of the paper's rows already measure."""
RACE_ORDER = (("square", "none"), ("varied", "none"), ("square_varied", "none"),  # does the variant still work?
              ("square", "aspect_ratio"), ("varied", "part_hash"),                 # the evasion each is made for
              ("square_varied", "aspect_ratio"), ("square_varied", "part_hash"),
              *((v, "crop_disagreement") for v in RACE_VARIANTS),                  # the feature-space detector
              ("square", "part_hash"),                                             # part_hash still matches square halves
              *((v, "large_crops") for v in RACE_VARIANTS if v != "paper"),
              ("paper", "aspect_ratio"), ("varied", "aspect_ratio"),               # paper-shaped: all removed by construction
              *((v, "crop_disagreement_fpr") for v in FPR_VARIANTS),               # without the oracle's budget
              *((v, "crop_disagreement_fpr_unfiltered") for v in FPR_VARIANTS))    # ... and without clean data
"""The order the new race arms run in: the most informative first; the cells whose filter removes
every poisoning input by construction last (the table still shows them); the columns added later
(crop_disagreement without the oracle) after every arm before them, so that no arm moves."""


def race_cells() -> list[tuple[str, str]]:
    """Every (variant, defense) of the race that is measured, in the grid's order (variant by
    variant): every variant against the oracle's defenses, :data:`FPR_VARIANTS` only against the
    ``fpr`` columns."""
    return [(v, d) for v in RACE_VARIANTS for d in RACE_DEFENSES if d not in FPR_DEFENSES or v in FPR_VARIANTS]


def race_arm(variant: str, defense: str) -> str:
    """The arm of one cell of the arms race (an arm of the paper's rows where one measures it)."""
    return RACE_REUSED.get((variant, defense)) or f"race_{variant}" + ("" if defense == "none" else f"_{defense}")


def race_budget(cfg: dict, num_train: int | None) -> float | None:
    """crop_disagreement's ``budget`` in the race: the share of poisoning inputs among all the recipe's
    pre-training inputs (a perfect detector could remove every one; 400 of 1,747 on digits: 0.229).
    None where it follows from a train split of unknown size (``num_train`` None)."""
    n_clean = cfg["pretrain_data"]["num_images"] or num_train
    if n_clean is None:
        return None
    _, n = recipe_rates(cfg)
    from ...attack.base import poisons_per_target

    poisons = poisons_per_target(cfg["attack"]["poisoning_rate"], n_clean, n) * n
    return round(poisons / (n_clean + poisons), 3)


def race_arms(cfg: dict, num_train: int | None) -> list[Arm]:
    """The arms-race cells no arm of the paper's rows measures, in :data:`RACE_ORDER`."""
    budget, ms = race_budget(cfg, num_train), large_crops_scale(cfg)
    budget = UNKNOWN if budget is None else f"{budget:g}"
    defenses = {"none": (), "aspect_ratio": ("defense.name=aspect_ratio",), "part_hash": ("defense.name=part_hash",),
                "crop_disagreement": ("defense.name=crop_disagreement", f"defense.crop_disagreement.budget={budget}"),
                "large_crops": ("defense.name=large_crops", f"defense.large_crops.min_scale={ms:g}"),
                "crop_disagreement_fpr": ("defense.name=crop_disagreement", f"defense.crop_disagreement.fpr={RACE_FPR:g}"),
                "crop_disagreement_fpr_unfiltered": ("defense.name=crop_disagreement", f"defense.crop_disagreement.fpr={RACE_FPR:g}",
                                                     "defense.crop_disagreement.encoder=unfiltered")}
    said = {"none": "no defense", "crop_disagreement": f"defense crop_disagreement (budget {budget})",
            "large_crops": f"defense large_crops (crops of at least {ms:g})",
            "crop_disagreement_fpr": f"defense crop_disagreement (fpr {RACE_FPR:g}, the clean encoder)",
            "crop_disagreement_fpr_unfiltered": f"defense crop_disagreement (fpr {RACE_FPR:g}, an encoder on the unfiltered set)"}
    return [Arm(race_arm(v, d), f"attacker {v} against {said.get(d, 'defense ' + d)}",
                (*RACE_VARIANTS[v], *defenses[d]), groups=(RACE,)) for v, d in RACE_ORDER]


def select(arms: list[Arm], only: list[str], cfg: dict | None = None) -> list[str]:
    """The arm names ``only`` asks for: each an arm's name or a group's (``race``: every arm of the
    arms race, the reused ones included), in the plan's order. Unknown names raise a UserError, and
    so does an arm named on its own whose data are not under the data root of ``cfg`` (its
    dataset's one-line error, which says where to get it): asked for by name, it is not skipped."""
    names = {a.name for a in arms}
    groups = {g for a in arms for g in a.groups}
    unknown = sorted(set(only) - names - groups)
    if unknown:
        raise UserError(f"unknown claims arm(s) {', '.join(unknown)}; choose from {', '.join(a.name for a in arms)} "
                        f"or the group(s) {', '.join(sorted(groups))}")
    for a in arms:
        why = missing_data(a, cfg) if cfg is not None and a.name in only else None
        if why:
            raise UserError(f"claims arm {a.name}: {why}")
    return [a.name for a in arms if a.name in only or set(a.groups) & set(only)]


def missing_data(arm: Arm, cfg: dict) -> str | None:
    """Why ``arm`` cannot run on this machine (a dataset it needs is not under the recipe's data
    root: that dataset's one-line error, which says where to get it), or None."""
    return next((why for ds in arm.needs if (why := missing(ds, cfg["data_root"]))), None)
