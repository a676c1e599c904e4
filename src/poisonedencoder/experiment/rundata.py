"""What a run reads and whom it waits for: its datasets, its clean pre-training inputs and the
defender's spare ones (:class:`RunData`), and the locks that keep two processes from training the
same run or the same shared clean encoder at once, and two runs from one folder
(:class:`RunLock`, :func:`holding_run_lock`, :func:`cache_lock`)."""
from __future__ import annotations

import functools
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from ..data import ImageDataset, load_dataset
from ..core.errors import UserError
from ..core.io import file_lock
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
    """``OUT/.lock`` (``rundir.lock``), taken before the folder's fingerprint is checked and held
    while a stage of the run runs (re-entrant within one object). Each time it is taken,
    ``claim()`` checks the folder under it (the fingerprint, then the stamp written): no second
    run can stamp the folder between another's check and its work.

    A second process that finds it held reads the holder's stamp: of another configuration
    (``fingerprint`` differs), it stops at once with one line (:class:`UserError`); of the same
    one (the same command twice), it says so, waits, then reuses what the first finished, instead
    of training into the same checkpoint at the same time. The kernel drops the lock when its
    holder dies. Under torchrun only rank 0 takes it (every rank claims)."""

    def __init__(self, rundir, fingerprint: str, claim: Callable[[], None], log: Callable[[str], None]):
        self.dir, self.fingerprint, self.claim, self.log, self.held = rundir, fingerprint, claim, log, False

    @contextmanager
    def __call__(self):
        from ..ssl.distributed import current

        if self.held:
            yield
            return
        if not current().is_main:
            self.claim()
            yield
            return
        with file_lock(self.dir.lock, self._busy):
            self.held = True
            try:
                self.claim()
                yield
            finally:
                self.held = False

    def _busy(self) -> None:
        """Another process holds the lock: refuse if it runs another configuration, else wait."""
        other = self.dir.read_stamp()
        if other is not None and other != self.fingerprint:
            raise UserError(f"another run, of a different configuration, is running in {self.dir.path} (it holds "
                            f"{self.dir.lock}); wait for it to finish or choose another --out")
        self.log(f"another run is using {self.dir.path}; waiting for it to finish ({self.dir.lock})")


def holding_run_lock(method):
    """Run the method while holding its object's run lock (``self._run_lock``, a :class:`RunLock`)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._run_lock():
            return method(self, *args, **kwargs)

    return locked


@contextmanager
def cache_lock(d: Path, log: Callable[[str], None], shared: bool = False):
    """Hold ``<d>.lock`` while the shared clean encoder in ``d`` is looked for and trained: a second
    run that needs the same encoder waits, then reuses it instead of training it again. ``shared``:
    only to read a finished encoder, beside any number of other readers (only a run holding it
    exclusively, to train or set aside, makes a reader wait). Under torchrun rank 0 holds the lock
    and the other ranks wait for it at a barrier."""
    from contextlib import nullcontext

    from ..ssl import distributed as D

    lock = d.parent / f"{d.name}.lock"

    def wait() -> None:
        doing = "training this encoder" if shared else "training or checking this encoder"
        log(f"pretrain clean: another run is {doing}; waiting for it ({lock})")

    with file_lock(lock, wait, shared) if D.current().is_main else nullcontext():
        D.barrier()
        yield
        D.barrier()
