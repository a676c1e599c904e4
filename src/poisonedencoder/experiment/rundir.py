"""The layout of a run directory, in one place: :class:`RunDir`.

A run (``poisonedencoder run``, :class:`~poisonedencoder.experiment.pipeline.Experiment`) writes into its folder::

    config.yaml       the resolved configuration
    .fingerprint      the configuration's stamp (config.experiment_fingerprint)
    poisons/          the craft: PNGs, manifest.json, timing.json (craft seconds)
    encoders/         the poisoned encoder (encoders/poisoned/: encoder.pt, seconds.txt, seconds.json)
    metrics.json      the evaluation (with evaluate_seconds)
    report.md         the readable report
    run.log           a worker's or a cluster job's messages (clean.log for a clean unit)

A run over seeds (:class:`~poisonedencoder.studies.seeds.SeedRuns`) holds one such run per seed in
``seed_<s>/`` and the pooled config.yaml, .fingerprint, metrics.json and report.md beside them.
Every module and script reads and writes these names through :class:`RunDir`.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import UserError
from ..core.io import write_json, write_text

METRICS, STAMP, CONFIG, REPORT = "metrics.json", ".fingerprint", "config.yaml", "report.md"
SECONDS_TXT, SECONDS_JSON = "seconds.txt", "seconds.json"


class RunDir:
    """The files of one run directory ``path`` (a single run or a run over seeds)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / CONFIG
        self.stamp = self.path / STAMP
        self.poisons = self.path / "poisons"
        self.manifest = self.poisons / "manifest.json"
        self.timing = self.poisons / "timing.json"
        self.encoders = self.path / "encoders"
        self.poisoned_encoder = self.encoders / "poisoned"
        self.unfiltered_encoder = self.encoders / "unfiltered"  # a filter's own encoder, on the unfiltered data
        self.metrics = self.path / METRICS
        self.report = self.path / REPORT
        self.lock = self.path / ".lock"

    def __fspath__(self) -> str:
        return str(self.path)

    def log_file(self, clean: bool = False) -> Path:
        """A worker's or a cluster job's log: ``run.log`` (``clean.log`` for a clean unit)."""
        return self.path / ("clean.log" if clean else "run.log")

    # -------------------------------------------------------------------------------- stamp
    def read_stamp(self) -> str | None:
        return self.stamp.read_text().strip() if self.stamp.is_file() else None

    def write_stamp(self, fingerprint: str, cfg_text: str) -> None:
        """The stamp and config.yaml (``cfg_text``: the configuration as :func:`config.dump` writes it)."""
        write_text(self.stamp, fingerprint + "\n")
        write_text(self.config, cfg_text)

    def holds_other(self, fingerprint: str, finished: tuple[Path, ...] | None = None) -> bool:
        """A stamp of another configuration, with any of ``finished`` present (default: the craft,
        the encoders or the metrics)."""
        if not self.stamp.exists() or self.stamp.read_text().strip() == fingerprint:
            return False
        return any(f.exists() for f in (finished or (self.manifest, self.encoders, self.metrics)))

    def check_own(self, fingerprint: str, what: str = "configuration",
                  finished: tuple[Path, ...] | None = None) -> None:
        if self.holds_other(fingerprint, finished):
            raise UserError(f"{self.path} holds a run with a different {what}; choose another --out")

    def finished(self, fingerprint: str) -> bool:
        """The metrics of a finished run, stamped with ``fingerprint``."""
        return self.metrics.is_file() and self.read_stamp() == fingerprint

    # -------------------------------------------------------------------------------- seeds
    def seed(self, s: int) -> RunDir:
        return RunDir(self.path / f"seed_{s}")

    def finished_seed_dirs(self) -> list[Path]:
        """The finished single-seed runs (``seed_<s>/`` holding a ``metrics.json``)."""
        return sorted(p for p in self.path.glob("seed_*") if RunDir(p).metrics.is_file())

    def read_metrics(self) -> dict | None:
        return json.loads(self.metrics.read_text()) if self.metrics.is_file() else None

    def seed_metrics(self, seeds: list[int]) -> list[dict]:
        return [json.loads(self.seed(s).metrics.read_text()) for s in seeds]

    # -------------------------------------------------------------------------------- timings
    def write_craft_seconds(self, seconds: float, num_poisons: int) -> None:
        write_json(self.timing, {"craft_seconds": round(seconds, 2),
                                 "craft_seconds_per_poison": round(seconds / max(1, num_poisons), 4)})

    def craft_seconds(self) -> float | None:
        return json.loads(self.timing.read_text()).get("craft_seconds") if self.timing.is_file() else None

    def stage_seconds(self, metrics: dict | None = None) -> dict:
        """The wall seconds of the run's stages (None where not recorded): ``craft``,
        ``pretrain_clean`` (the encoder folder that the metrics name), ``pretrain_poisoned``,
        ``pretrain_unfiltered`` (a filter's encoder on the unfiltered data, where the run trained one), ``evaluate``."""
        m = self.read_metrics() if metrics is None else metrics
        m = m or {}
        clean = (m.get("encoders") or {}).get("clean")
        return {"craft": self.craft_seconds(),
                "clean_dir": Path(clean).parent if clean else None,
                "pretrain_clean": encoder_seconds(Path(clean).parent) if clean else None,
                "pretrain_poisoned": encoder_seconds(self.poisoned_encoder),
                "pretrain_unfiltered": encoder_seconds(self.unfiltered_encoder),
                "evaluate": m.get("evaluate_seconds")}


def write_encoder_seconds(d: Path, seconds: float, timing: dict | None) -> None:
    """``d/seconds.txt``: the encoder's total wall seconds as its first token; after a resume a
    second line with the resumed call's share and the earlier calls' (up to their last
    checkpoint, from the checkpoint); the same in ``d/seconds.json``."""
    resumed = bool(timing and timing["resumed_after_epoch"])
    before = timing["seconds_before"] if resumed else 0.0
    total = seconds + (before or 0.0)
    text = f"{total:.1f}\n"
    if resumed:
        earlier = f"{before:.1f} s before it (up to its last checkpoint)" if before is not None else \
            "the time before it was not recorded (a checkpoint of an older version): the total is the resumed part only"
        text += f"resumed after epoch {timing['resumed_after_epoch']}: {seconds:.1f} s in the resumed run, {earlier}\n"
    write_text(Path(d) / SECONDS_TXT, text)
    write_json(Path(d) / SECONDS_JSON, {"total_seconds": round(total, 1), "resumed": resumed,
                                        "resumed_after_epoch": timing["resumed_after_epoch"] if resumed else None,
                                        "resumed_seconds": round(seconds, 1) if resumed else None,
                                        "seconds_before_resume": round(before, 1) if resumed and before is not None else None})


def encoder_seconds(d: str | Path) -> float | None:
    """The wall time recorded for the encoder in ``d``, all calls together when it was resumed
    (None if none was recorded)."""
    path = Path(d) / SECONDS_TXT
    return float(path.read_text().split()[0]) if path.is_file() else None
