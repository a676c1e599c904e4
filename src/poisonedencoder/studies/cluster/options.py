"""Where and how the runs go as jobs (:class:`Cluster`): its settings, checked when made and
against the partition (``sinfo``) before anything is submitted; the time limit leaves room for
Slurm's requeue signal (:mod:`poisonedencoder.studies.cluster`)."""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from ...core.errors import UserError, check_number

KINDS = ("slurm", "local")
POLL_SECONDS = {"local": 0.5, "slurm": 5.0}
INSTALL = "pip install 'poisonedencoder[cluster]'"

# field -> the command-line option that sets it (error messages name both)
OPTIONS = {"partition": "--slurm", "gpus_per_job": "--slurm-gpus", "cpus_per_job": "--slurm-cpus",
           "timeout_min": "--slurm-time", "mem_gb": "--slurm-mem", "array_parallelism": "--slurm-max-jobs",
           "folder": "--slurm-folder", "signal_delay_s": "--slurm-signal-delay"}
SLURM_ONLY = ("partition", "mem_gb", "array_parallelism", "signal_delay_s")
DEFAULT_TIMEOUT_MIN = 240
# the requeue signal (sbatch --signal=USR2@DELAY): Slurm may send it up to a minute before the
# DELAY asked (its timer runs in steps); the job then needs a few seconds to pickle itself and
# call scontrol requeue, and before the earliest signal it needs time to start Python and torch,
# load its data and train to a checkpoint
SIGNAL_EARLY_S = 60
DEFAULT_SIGNAL_DELAY_S = 90  # submitit's default
MIN_SIGNAL_DELAY_S = 20
MIN_START_S = 60
CANCEL_WAIT_S = 120  # after Ctrl-C: how long to wait for the cancelled jobs to leave the queue
INTERRUPT_WAIT_S = 30  # after Ctrl-C: how long running jobs get to end on their SIGINT before a plain scancel


def _name(field_name: str) -> str:
    return f"{OPTIONS[field_name]} ({field_name})"


@dataclass(frozen=True)
class Cluster:
    """Where and how the runs go as jobs; checked when made (:class:`UserError`, one line).

    ``kind``: ``slurm`` (submitit's Slurm executor; needs ``sbatch``) or ``local`` (submitit's
    local executor: the jobs run on this machine, all at once). ``folder``: submitit's folder
    (the jobs' pickles and logs, ``folder/<job id>/``). ``partition``: the Slurm partition (None:
    the cluster's default). ``gpus_per_job``, ``cpus_per_job``: each job's GPUs and CPU cores (a
    run uses ``cpus_per_job`` torch threads unless its config sets ``pretrain.threads``).
    ``timeout_min``: each job's time limit in minutes. ``mem_gb``: each job's memory (None: the
    cluster's default). ``array_parallelism``: at most this many jobs of an array at once (None:
    submitit's default, 256, within the cluster's own limits). ``signal_delay_s``: Slurm signals a
    job this many seconds before its limit, and submitit requeues it (None: 90, or less for a limit
    under 4 minutes, see :meth:`signal_delay`); the limit must leave a job a minute before the
    earliest signal."""

    kind: str = "slurm"
    folder: str | Path = "slurm"
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int = 4
    timeout_min: int = DEFAULT_TIMEOUT_MIN
    mem_gb: float | None = None
    array_parallelism: int | None = None
    signal_delay_s: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"cluster kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not str(self.folder).strip():
            raise UserError(f"{_name('folder')} must be a folder, got an empty name")
        if self.partition is not None and (not isinstance(self.partition, str) or not self.partition.strip()
                                           or any(c.isspace() for c in self.partition)):
            raise UserError(f"{_name('partition')} must be a partition name, got {self.partition!r}")
        check_number(self.gpus_per_job, _name("gpus_per_job"), 0, 64, integer=True)
        check_number(self.cpus_per_job, _name("cpus_per_job"), 1, 1024, integer=True)
        check_number(self.timeout_min, _name("timeout_min"), 1, 60 * 24 * 30, integer=True)
        if self.mem_gb is not None:
            check_number(self.mem_gb, _name("mem_gb"), 0, 16384, lo_open=True)
        if self.array_parallelism is not None:
            check_number(self.array_parallelism, _name("array_parallelism"), 1, 100000, integer=True)
        if self.signal_delay_s is not None:
            check_number(self.signal_delay_s, _name("signal_delay_s"), MIN_SIGNAL_DELAY_S, 3600, integer=True)
        if self.kind == "local":
            given = [f for f in SLURM_ONLY if getattr(self, f) is not None]
            if given:
                raise UserError(f"{_name(given[0])} is a Slurm setting; the local executor runs every job "
                                "on this machine at once")
        else:
            self._check_time()

    def signal_delay(self) -> int:
        """Seconds before the limit at which Slurm signals a job to requeue it: ``signal_delay_s``,
        else 90 where the limit leaves room, else what leaves a job :data:`MIN_START_S` before the
        earliest signal (60 s with a 3-minute limit)."""
        if self.signal_delay_s is not None:
            return self.signal_delay_s
        room = self.timeout_min * 60 - SIGNAL_EARLY_S - MIN_START_S
        return max(MIN_SIGNAL_DELAY_S, min(DEFAULT_SIGNAL_DELAY_S, room))

    def _check_time(self) -> None:
        """A job's limit leaves it time to start before Slurm's requeue signal (else every job
        would be signalled, requeued and signalled again before its run begins)."""
        delay = self.signal_delay()
        if self.timeout_min * 60 - delay - SIGNAL_EARLY_S >= MIN_START_S:
            return
        shortest = math.ceil((delay + SIGNAL_EARLY_S + MIN_START_S) / 60)
        smaller = "" if self.signal_delay_s is None else f" or a smaller {OPTIONS['signal_delay_s']}"
        raise UserError(f"{_name('timeout_min')} {self.timeout_min} is too short: Slurm signals a job {delay} s before "
                        f"its limit, up to {SIGNAL_EARLY_S} s earlier, to requeue it, which leaves it under "
                        f"{MIN_START_S} s to start; give {OPTIONS['timeout_min']} {shortest} or more{smaller}")

    def describe(self) -> str:
        """``slurm (partition gpu, 1 GPU, 4 CPUs, 240 min per job)``."""
        where = "" if self.kind == "local" else f"partition {self.partition or '(default)'}, "
        return (f"{self.kind} ({where}{self.gpus_per_job} GPU, {self.cpus_per_job} CPU, "
                f"{self.timeout_min} min per job; logs in {self.folder})")

    def parameters(self) -> dict:
        """The settings for ``submitit.AutoExecutor.update_parameters``."""
        p = {"name": "poisonedencoder", "timeout_min": self.timeout_min, "cpus_per_task": self.cpus_per_job,
             "gpus_per_node": self.gpus_per_job, "tasks_per_node": 1, "nodes": 1}
        if self.kind == "slurm":
            p["mem_gb"] = self.mem_gb
            p["slurm_partition"] = self.partition
            p["slurm_array_parallelism"] = self.array_parallelism
            p["slurm_signal_delay_s"] = self.signal_delay()
        return {k: v for k, v in p.items() if v is not None}

    def check_submit(self) -> None:
        """This machine can submit the jobs: submitit is installed and, for Slurm, sbatch and srun are here."""
        _submitit()
        if self.kind == "slurm":
            missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
            if missing:
                raise UserError(f"--slurm needs Slurm's {' and '.join(missing)} on PATH (run on a login node of the "
                                "cluster); to try the jobs on this machine use --submitit-local")

    def fit_partition(self, time_given: bool) -> Cluster:
        """Checked against the partition (``sinfo``): it exists, and ``timeout_min`` is within its
        time limit. The default limit (``time_given`` False) becomes the partition's limit where
        that is shorter. Returns the cluster to use; where ``sinfo`` does not answer, this one
        (``sbatch`` then says what is wrong)."""
        if self.kind != "slurm":
            return self
        partitions = slurm_partitions()
        if partitions is None:
            return self
        name = self.partition or next((p for p, (_lim, default) in partitions.items() if default), None)
        if name is None:
            raise UserError("this cluster has no default partition: give one, --slurm PARTITION "
                            f"(sinfo lists {', '.join(partitions) or 'none'})")
        if name not in partitions:
            raise UserError(f"{_name('partition')} {name}: no such partition here (sinfo lists "
                            f"{', '.join(partitions) or 'none'})")
        limit = partitions[name][0]
        if limit is None or self.timeout_min <= limit:
            return self
        if time_given:
            raise UserError(f"{_name('timeout_min')} {self.timeout_min} is above partition {name}'s time limit of "
                            f"{limit} min: give {OPTIONS['timeout_min']} {limit} or less")
        return replace(self, timeout_min=limit)

    def executor(self):
        """A submitit executor with these settings (jobs' files in ``folder/<job id>/``)."""
        self.check_submit()
        submitit = _submitit()
        ex = submitit.AutoExecutor(folder=Path(self.folder) / "%j", cluster=self.kind)
        ex.update_parameters(**self.parameters())
        return ex

    def check_units(self, units: list) -> None:
        """The runs' device fits the jobs' GPUs."""
        self.check_devices([u.cfg["device"] for u in units])

    def check_devices(self, devices: list[str]) -> None:
        """A run on ``cuda`` needs a GPU per job, and a GPU per job needs runs on ``cuda``."""
        devices = sorted({str(d) for d in devices})
        cuda = [d for d in devices if d.startswith("cuda")]
        if cuda and self.gpus_per_job == 0:
            raise UserError(f"device {cuda[0]} needs a GPU per job: add {OPTIONS['gpus_per_job']} 1")
        if self.gpus_per_job and not cuda:
            raise UserError(f"{OPTIONS['gpus_per_job']} {self.gpus_per_job} with device {devices[0]}: the runs would "
                            "leave their GPUs idle; set --device cuda (or the gpu preset)")


def slurm_partitions() -> dict[str, tuple[int | None, bool]] | None:
    """``sinfo``'s partitions: name -> (time limit in minutes or None for none, whether it is the
    default); None where ``sinfo`` is missing or fails."""
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%P|%l"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    out: dict[str, tuple[int | None, bool]] = {}
    for line in r.stdout.splitlines():
        name, _, limit = line.strip().partition("|")
        if name:
            default = name.endswith("*")
            name = name.rstrip("*")
            out[name] = (parse_minutes(limit), default or out.get(name, (None, False))[1])
    return out


def parse_minutes(text: str) -> int | None:
    """Slurm's time (``infinite``, ``MM:SS``, ``HH:MM:SS``, ``D-HH:MM:SS``, ``D-HH``) in whole
    minutes, rounded down; None for no limit or what cannot be read."""
    text = text.strip()
    if not text or text.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days, _, rest = text.rpartition("-")
    try:
        d = int(days) if days else 0
        parts = [int(x) for x in rest.split(":")]
    except ValueError:
        return None
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        parts += [0] * (3 - len(parts))
        h, m, _s = parts[:3]
    elif len(parts) == 3:
        h, m, _s = parts
    else:  # MM:SS or MM
        h, m = 0, parts[0]
    return d * 1440 + h * 60 + m


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UserError(f"running jobs through submitit needs the submitit package: {INSTALL}") from None
    return submitit
