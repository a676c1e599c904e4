"""Choose target inputs (from a downstream test split), their target classes, and the
attacker's reference inputs (from the same task's train split, never its test split)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
from pydantic import Field

from ..data import ImageDataset
from ..core.errors import UserError, is_integer
from ..core.errors import preview as _preview
from ..core.settings import Settings


class TaskSettings(Settings):
    """One entry of ``tasks``: a target downstream task and the target inputs the attacker picks in it."""

    dataset: str = "digits"
    num_targets: int = Field(5, description="random target inputs from the test split, random target classes")
    targets: Optional[list] = Field(None, description="or explicit: [{index: 12, target_class: 3}] (class index or "
                                    "name); optional\nreferences: [train indices] of the target class (else drawn with the seed)")

    def check(self, where: str) -> None:
        from ..data import check_dataset

        check_dataset(self.dataset, f"{where}.dataset")
        if self.targets is None:
            if self.num_targets < 1:
                raise UserError(f"{where}.num_targets must be a positive integer, got {_preview(self.num_targets)}")
        elif not all(_explicit_target(x) for x in self.targets):
            raise UserError(f"{where}.targets must be a list of {{index: integer, target_class: integer or name, "
                            f"references (optional): [train indices]}} mappings, got {_preview(self.targets)}")


def _explicit_target(x) -> bool:
    """``{index, target_class, references?}`` with an integer index, a class index or name, and
    a non-empty list of integer train indices if references are given."""
    if not (isinstance(x, dict) and {"index", "target_class"} <= set(x) <= {"index", "target_class", "references"}):
        return False
    refs = x.get("references", [1])
    return (is_integer(x["index"]) and (is_integer(x["target_class"]) or isinstance(x["target_class"], str))
            and isinstance(refs, list) and refs != [] and all(is_integer(r) for r in refs))


@dataclass
class Target:
    task: int                 # index of the target downstream task in the config
    dataset: str
    test_index: int           # index of the target input in the task's test split
    true_class: int
    target_class: int
    reference_indices: list[int] = field(default_factory=list)  # indices into the task's train split

    def to_dict(self) -> dict:
        return asdict(self)


def select_targets(ds: ImageDataset, task: int, num_targets: int | None = None, explicit: list[dict] | None = None,
                   seed: int = 0) -> list[Target]:
    """Random target inputs with a random target class other than the true one, or the explicit list
    (``[{index, target_class, references?}]``: with ``references``, the reference inputs are those
    train-split indices, as the attacker of another run chose them; without, they are drawn)."""
    rng = np.random.default_rng([seed, task, 1])
    n_test = len(ds.test)
    out = []
    if explicit:
        for e in explicit:
            i = int(e["index"])
            if not 0 <= i < n_test:
                raise UserError(f"target index {i} is outside the test split of {ds.name} ({n_test} inputs)")
            tc = ds.class_index(e["target_class"])
            refs = [int(r) for r in e.get("references") or []]
            for r in refs:
                if not 0 <= r < len(ds.train):
                    raise UserError(f"reference input {r} of target {i} is outside the train split of {ds.name} "
                                    f"({len(ds.train)} inputs)")
                if int(ds.train.labels[r]) != tc:
                    raise UserError(f"reference input {r} of target {i} is of class {int(ds.train.labels[r])}, "
                                    f"not the target class {tc}")
            out.append(Target(task, ds.name, i, int(ds.test.labels[i]), tc, sorted(refs)))
        return out
    if num_targets > n_test:
        raise UserError(f"num_targets {num_targets} exceeds the {n_test} test inputs of {ds.name}")
    if ds.num_classes < 2:
        raise UserError(f"dataset {ds.name} has fewer than 2 classes; no target class can differ from the true class")
    for i in rng.choice(n_test, size=num_targets, replace=False):
        y = int(ds.test.labels[i])
        tc = int(rng.choice([c for c in range(ds.num_classes) if c != y]))
        out.append(Target(task, ds.name, int(i), y, tc))
    return out


def select_references(ds: ImageDataset, target_class: int, k: int, rng: np.random.Generator,
                      typicality: np.ndarray | None = None) -> list[int]:
    """``k`` reference inputs of ``target_class`` from the train split.

    Random by default; with ``typicality`` (one score per train input, higher = more typical
    of its class, e.g. the cosine to the class-mean feature of a surrogate encoder) the ``k``
    most typical inputs of the class.
    """
    pool = np.flatnonzero(ds.train.labels == target_class)
    if len(pool) == 0:
        raise UserError(f"class {target_class} of {ds.name} has no training inputs to use as reference inputs")
    if k > len(pool):
        raise UserError(f"num_references {k} exceeds the {len(pool)} training inputs of class {target_class} in {ds.name}")
    if typicality is not None:
        order = pool[np.argsort(-np.asarray(typicality)[pool], kind="stable")]
        return sorted(int(i) for i in order[:k])
    return sorted(int(i) for i in rng.choice(pool, size=k, replace=False))


def choose_references(targets: list[Target], tasks: list, k: int, seed: int,
                      typicality: list | None = None) -> None:
    """The attacker's reference inputs: ``k`` of each target input's target class (stored on it, for
    every target input that has none), from the task's train split; the same for every attack.
    ``typicality[t.task]`` (optional) scores that task's train inputs (see :func:`select_references`)."""
    rng = np.random.default_rng([seed, 2])
    for t in targets:
        if not t.reference_indices:
            t.reference_indices = select_references(tasks[t.task], t.target_class, k, rng,
                                                    typicality[t.task] if typicality else None)


def class_typicality(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Cosine similarity of each input's feature to the mean feature of its own class."""
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(0, keepdims=True)
    f /= np.linalg.norm(f, axis=1, keepdims=True).clip(1e-12)
    means = np.stack([f[labels == c].mean(0) if (labels == c).any() else np.zeros(f.shape[1])
                      for c in range(num_classes)])
    means /= np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)
    return (f * means[labels]).sum(1)
