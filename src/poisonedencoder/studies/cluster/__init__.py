"""Independent single-seed runs as jobs of a cluster, through submitit.

:func:`poisonedencoder.studies.parallel.run_units` hands its units here when given a :class:`Cluster`:
every unit not finished yet becomes one job, all of them one job array (``executor.map_array``;
on Slurm one ``sbatch --array``), and the call waits for them and returns the same
:class:`~poisonedencoder.studies.units.Outcome` as the local runs. A job runs
:class:`~poisonedencoder.experiment.pipeline.Experiment` in the unit's run folder with its messages in that
folder's ``run.log`` (``clean.log`` for a clean unit) and on the job's standard output; submitit
keeps each job's standard output and error in ``folder/<job id>/``. A failed job's reason is the
last line of its run's log (``error: ...``), else the last line of its standard error.

A job stopped at its time limit or preempted is requeued by submitit (the job is
checkpointable: it is the same unit again) and resumes from the run's last pre-training
checkpoint, at most three times. Slurm sends the signal for this ``signal_delay_s`` before the
limit (``sbatch --signal``), up to a minute earlier than asked; a limit so short that the signal
would come before a job can start is refused when the :class:`Cluster` is made. The run folders
and the cache folder (shared clean encoders, decoded datasets, guarded by ``flock`` locks) must
be on storage every node sees.

Ctrl-C in the waiting process (``KeyboardInterrupt``) cancels the jobs not finished: on Slurm it
interrupts the running ones (SIGINT through ``scancel --signal=INT``: submitit's jobs ignore the
SIGTERM of a plain ``scancel`` until the cluster's KillWait runs out), cancels the rest and waits
until none of them is left in the queue, so that the same command, run again, resumes from the
checkpoints without an old job still writing them.

submitit's job requeues itself with ``scontrol requeue``, and Slurm ends the job's processes as it
requeues it, that ``scontrol`` among them: submitit then takes the requeue for failed and records
an error, and the waiting process would report the run as failed while Slurm runs it again. In a
job, :class:`UnitJob` takes a requeue whose ``scontrol`` died of SIGTERM as done.

``kind="local"`` runs the same jobs on this machine with submitit's ``LocalExecutor``, every job
of an array at once: for tests and for trying a sweep before a cluster. submitit pickles the job's
function and its unit (the toolkit's own code and a configuration) into the folder and the job
loads it back; a job folder is no place for files from elsewhere.
"""
from __future__ import annotations

from .jobs import UnitJob, job_line, queued_jobs, run_jobs
from .options import KINDS, OPTIONS, Cluster, parse_minutes, slurm_partitions

__all__ = ["KINDS", "OPTIONS", "Cluster", "UnitJob", "job_line", "parse_minutes", "queued_jobs", "run_jobs",
           "slurm_partitions"]
