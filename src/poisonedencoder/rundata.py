"""What a run reads and whom it waits for: its datasets, its clean pre-training inputs and the
defender's spare ones (:class:`RunData`), and the locks that keep two processes from training the
same run or the same shared clean encoder at once (:class:`RunLock`, :func:`cache_lock`)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from .data import ImageDataset, load_dataset
from .errors import UserError
from .io import file_lock
from .stages import clean_indices


class RunData:
    """The datasets of configuration ``cfg`` (decoded once, cached in ``cache``), the clean
    pre-training inputs drawn with its seed, and the train inputs pre-training leaves to the defender."""

    def __init__(self, cfg: dict, cache: Path):
        self.cfg, self.cache = cfg, cache
        self._datasets: dict[str, ImageDataset] = {}
        self._sizes_checked = False

    def dataset(self, spec: str) -> ImageDataset:
        if spec not in self._datasets:
            self._datasets[spec] = load_dataset(spec, self.cfg["pretrain"]["image_size"], self.cfg["data_root"],
                                                self.cache, progress=True)
        return self._datasets[spec]

    def pretrain_dataset(self) -> ImageDataset:
        return self.dataset(self.cfg["pretrain_data"]["dataset"])

    def tasks(self) -> list[ImageDataset]:
        """The target downstream tasks' datasets, in the config's order."""
        return [self.dataset(t["dataset"]) for t in self.cfg["tasks"]]

    def clean_indices(self) -> np.ndarray:
        """The train-split indices of the clean pre-training inputs."""
        return clean_indices(self.cfg["pretrain_data"]["num_images"], len(self.pretrain_dataset().train), self.cfg["seed"])

    def clean_pretrain_images(self) -> np.ndarray:
        return self.pretrain_dataset().train.images[self.clean_indices()]

    def spare_indices(self) -> np.ndarray:
        """The train-split inputs that pre-training did not use: the clean data a defender owns."""
        return np.setdiff1d(np.arange(len(self.pretrain_dataset().train)), self.clean_indices())

    def check_sizes(self, defense) -> None:
        """The checks that need only the config and the datasets' sizes, before any training (they
        would otherwise fail only after an encoder trained): the batch fits the clean pre-training
        set, and the defense's own (:meth:`~poisonedencoder.defenses.Defense.check_sizes`: fine-tuning
        needs ``num_clean`` train inputs that pre-training leaves unused)."""
        if self._sizes_checked:
            return
        num_clean, batch = len(self.clean_indices()), self.cfg["pretrain"]["batch_size"]
        if batch > num_clean:
            raise UserError(f"pretrain.batch_size {batch} is larger than the pre-training set ({num_clean} inputs)")
        defense.check_sizes(len(self.pretrain_dataset().train), num_clean)
        self._sizes_checked = True


class RunLock:
    """``OUT/.lock``, held while a stage of the run runs (re-entrant within one object): a second
    run into the same folder (the same command twice) waits, says so, then reuses what the first
    finished, instead of training into the same checkpoint at the same time. The kernel drops the
    lock when its holder dies. Under torchrun only rank 0 takes it."""

    def __init__(self, path: Path, out: Path, log: Callable[[str], None]):
        self.path, self.out, self.log, self.held = path, out, log, False

    @contextmanager
    def __call__(self):
        from .ssl.distributed import current

        if self.held or not current().is_main:
            yield
            return

        def wait() -> None:
            self.log(f"another run is using {self.out}; waiting for it to finish ({self.path})")

        with file_lock(self.path, wait):
            self.held = True
            try:
                yield
            finally:
                self.held = False


@contextmanager
def cache_lock(d: Path, log: Callable[[str], None]):
    """Hold ``<d>.lock`` while the shared clean encoder in ``d`` is looked for and trained: a second
    run that needs the same encoder waits, then reuses it instead of training it again. Under
    torchrun rank 0 holds the lock and the other ranks wait for it at a barrier."""
    from contextlib import nullcontext

    from .ssl import distributed as D

    lock = d.parent / f"{d.name}.lock"

    def wait() -> None:
        log(f"pretrain clean: another run is training this encoder; waiting for it ({lock})")

    with file_lock(lock, wait) if D.current().is_main else nullcontext():
        D.barrier()
        yield
        D.barrier()
