"""The resolved configurations an arm runs: the recipe with the arm's overrides
(:func:`arm_config`), and one target per run's single-target configurations
(:func:`one_per_run_configs`)."""
from __future__ import annotations

from ... import config as C
from ...core.errors import UserError
from .arms import Arm, recipe_rates


def arm_config(user: dict, overrides: list[str], arm: Arm) -> dict:
    """The arm's resolved config. Arms other than the recipe itself keep no snapshots (ASR over
    training is the recipe's curve; a snapshot costs a downstream evaluation, and changes no result)."""
    quiet = [] if arm.name == "poisonedencoder" else ["pretrain.snapshot_every=0"]
    return C.resolve(user, list(overrides) + quiet + list(arm.overrides))


def one_per_run_configs(cfg: dict, reference_runs: list) -> list[tuple[str, dict]]:
    """``(relative run directory, single-seed config)`` of each target input of the recipe's runs
    (``reference_runs``: its :class:`~poisonedencoder.experiment.pipeline.Experiment` per seed, crafted)."""
    per_target, _ = recipe_rates(cfg)
    out = []
    for exp in reference_runs:
        manifest = exp.craft()
        for t in manifest["targets"]:
            task = dict(cfg["tasks"][t["task"]])
            task.update(num_targets=1, targets=[{"index": t["test_index"], "target_class": t["target_class"],
                                                 "references": list(t["reference_indices"])}])
            one = {**exp.cfg, "tasks": [task], "attack": {**exp.cfg["attack"], "poisoning_rate": per_target},
                   "pretrain": {**exp.cfg["pretrain"], "snapshot_every": 0}}
            if len(cfg["tasks"]) > 1:
                raise UserError("one target per run needs a recipe with one downstream task")
            C.validate(one)
            out.append((f"seed_{exp.cfg['seed']}/target_{t['test_index']}_to_{t['target_class']}", one))
    return out
