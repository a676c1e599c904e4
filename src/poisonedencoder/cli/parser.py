"""The command line's argument parser: the subcommands and their options (:func:`build_parser`)."""
from __future__ import annotations

import argparse

from .. import __version__
from .options import add_trust_torchscript


def _add_common(p: argparse.ArgumentParser, config: bool = True, out: str = "runs/<config name>") -> None:
    if config:
        p.add_argument("config", help="experiment YAML file (see configs/)")
    p.add_argument("--out", help=f"run directory (default: {out})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set pretrain.epochs=10 (repeatable)")
    p.add_argument("--preset", help="preset: paper, cpu, gpu or demo")
    p.add_argument("--data-root", metavar="DIR",
                   help="where every dataset is read from (torchvision ones downloaded to); config key data_root; "
                        "default: $POISONEDENCODER_DATA, else ~/.cache/poisonedencoder/data (docs/CONFIG.md)")
    p.add_argument("--cache-dir", help="cache for decoded datasets and shared clean encoders")
    p.add_argument("--device", help="cpu or cuda[:N]")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2: one run per seed in OUT/seed_<s>/ and the "
                                   "pooled result with 95%% intervals in OUT/ (config key seeds)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="poisonedencoder", description="PoisonedEncoder: data poisoning of contrastive pre-training.")
    ap.add_argument("--version", action="version", version=f"poisonedencoder {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="digits end to end in 2-5 minutes on 2 CPU cores: prints CA / PA / ASR")
    _add_common(p, config=False, out="runs/demo")
    for name, text in (("run", "craft, pre-train clean and poisoned encoders, evaluate"),
                       ("craft", "build the poisoning inputs (PNG + manifest.json)"),
                       ("pretrain", "pre-train the clean and/or poisoned encoder"),
                       ("evaluate", "downstream classifiers and CA / PA / ASR (runs missing stages)")):
        p = sub.add_parser(name, help=text)
        _add_common(p)
        if name == "run":
            _add_parallel(p, "--parallel")
            _add_cluster(p)
        if name == "pretrain":
            p.add_argument("--which", choices=("both", "clean", "poisoned"), default="both")
        if name == "craft":
            p.add_argument("--export-imagefolder", metavar="DIR",
                           help="also write the clean pre-training inputs and the poisoning inputs as PNGs in "
                                "DIR/unlabeled/ (torchvision ImageFolder layout) with manifest.json in DIR; "
                                "DIR must be new or empty (docs/AUDIT.md)")
        if name == "evaluate":
            g = p.add_argument_group("encoders trained elsewhere (docs/AUDIT.md)")
            g.add_argument("--encoder", metavar="PATH",
                           help="evaluate this poisoned encoder instead of the toolkit's: a state_dict (with --arch), "
                                "or a TorchScript file (with --trust-torchscript)")
            g.add_argument("--clean-encoder", metavar="PATH",
                           help="the clean encoder to compare with (CA, clean ASR, clean margins); without it they "
                                "are reported as not measured")
            g.add_argument("--arch", help="architecture of a state_dict: resnet18 | resnet50 (torchvision, fc "
                                          "removed) | resnet18-cifar | resnet18w | cnn7 (the toolkit's backbones) | "
                                          "timm:NAME")
            g.add_argument("--width", type=int, help="cnn7's base width, resnet18w's first-stage channels (default: "
                                                     "the config's pretrain.width; a backbone of more than 1e9 "
                                                     "parameters is refused: POISONEDENCODER_MAX_PARAMETERS=N)")
            g.add_argument("--prefix", help="take the state_dict's keys under this prefix, e.g. 'net.' (default: "
                                            "strip module./backbone./encoder./model. where they fit)")
            g.add_argument("--normalize", choices=("imagenet", "cifar10", "none"),
                           help="normalization of the [0, 1] images before the encoder (default: none for an encoder "
                                "that stores its own input statistics, as the toolkit's do; imagenet otherwise)")
            add_trust_torchscript(g)
    from .scan import add_parser as add_scan

    add_scan(sub)
    p = sub.add_parser("sweep", help="one run per value of a config key; sweep.csv and sweep.png")
    _add_common(p)
    _add_parallel(p, "--parallel")
    _add_cluster(p)
    p.add_argument("--param", required=True, help="config key, e.g. attack.poisoning_rate")
    p.add_argument("--values", required=True, help="comma-separated values, e.g. 0.01,0.03,0.1")
    p = sub.add_parser("claims", help="the paper's claims, one row each with a verdict: runs what is missing "
                                      "(resumable), prints the table, writes OUT/claims.md and claims.json",
                       description="Runs every arm of the claims table that is not finished (resumable), then prints "
                                   "the table and writes OUT/claims.md, OUT/claims.json (and OUT/arms_race.png). "
                                   "--list, --table and --record run nothing; --list and --table write nothing "
                                   "(--table --write rewrites the table's files from the finished runs).")
    p.add_argument("config", nargs="?",
                   help="the recipe every arm varies (default: digits_works.yaml, shipped with the package: "
                        "configs/digits_works.yaml in a checkout)")
    _add_common(p, config=False, out="runs/claims")
    p.add_argument("--only", help="comma-separated arms to run (see --list), or a group of them: race (the "
                                  "adaptive attacker against the defenses); the table shows every row")
    p.add_argument("--list", action="store_true",
                   help="print the arms, their overrides, what is finished, what cannot run here and each arm's "
                        "place in the campaign's queue (--campaign); run nothing, write nothing")
    p.add_argument("--table", action="store_true",
                   help="print the table of what is finished under OUT (an arm's finished runs are judged whatever "
                        "this machine holds: a record folder rebuilds its table anywhere, with no dataset or device); "
                        "run nothing, write nothing")
    p.add_argument("--write", action="store_true",
                   help="with --table: also rewrite OUT/claims.md, OUT/claims.json and OUT/arms_race.png from the "
                        "finished runs (a run of the arms rewrites them itself)")
    _add_parallel(p, "--jobs")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="wall-time bound: start no run that would end past it (by the runs finished so far), stop "
                        "the ones still going at it (checkpoints stay; the same command resumes), then the table")
    _add_cluster(p)
    p.add_argument("--record", metavar="DIR", help="copy every finished run's record (metrics, config, timings, "
                                                  "manifest; no encoders or images) and the table's files as they are "
                                                  "into DIR (--table --write first to bring them up to date); run "
                                                  "nothing. 'claims --out DIR --table' rebuilds the table from DIR")
    p.add_argument("--campaign", metavar="RECORD",
                   help="run the next arms of the campaign's fixed queue (claims --list names them; docs/CLAIMS.md, "
                        "'A campaign over short calls') that the record folder RECORD does not complete, in the "
                        "queue's order, within --budget; RECORD's runs are checked, copied into OUT and never run again")
    p.add_argument("--merge", metavar="DIR", help="check every run of the record folder DIR (what --record writes) "
                                                 "against its arm and seed, add the new ones to the record folder OUT "
                                                 "(a run OUT holds with another metrics.json, config.yaml or stamp is refused) and rewrite OUT's "
                                                 "table; run nothing")
    p.add_argument("--doc", metavar="FILE", help="with --merge: also rewrite the campaign's section of FILE, between "
                                                "the lines <!-- claims-campaign:begin --> and <!-- claims-campaign:end -->")
    p.add_argument("--shared-datasets", metavar="DIR",
                   help="deprecated: the former name of --data-root (the same folder, holding eurosat/ and facemask/)")
    return ap


def _add_parallel(p, flag: str) -> None:
    p.add_argument(flag, dest="jobs", type=int, default=1, metavar="N",
                   help="independent runs at once, each a process on the config's device (on a CPU with cores/N "
                        "threads; on 2 cores 2 one-thread runs finish 1.6x the runs per hour of one: "
                        "benchmarks/parallel_runs.py; on a GPU they share it). Default 1")


_CLUSTER_OPTIONS = (("--slurm-gpus", "slurm_gpus", "gpus_per_job"), ("--slurm-cpus", "slurm_cpus", "cpus_per_job"),
                    ("--slurm-time", "slurm_time", "timeout_min"), ("--slurm-mem", "slurm_mem", "mem_gb"),
                    ("--slurm-max-jobs", "slurm_max_jobs", "array_parallelism"), ("--slurm-folder", "slurm_folder", "folder"),
                    ("--slurm-signal-delay", "slurm_signal_delay", "signal_delay_s"))


def _add_cluster(p) -> None:
    g = p.add_argument_group("runs as cluster jobs (submitit; pip install 'poisonedencoder[cluster]'; docs/DESIGN.md)")
    g.add_argument("--slurm", metavar="PARTITION",
                   help="every run a Slurm job on PARTITION ('default': the cluster's default), all of them one job "
                        "array (a sweep's or the table's shared clean encoders in one before); waits for them; the "
                        "same command resumes. Run folders and --cache-dir must be on storage the nodes share")
    g.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per job (default: 1 with device cuda, else 0)")
    g.add_argument("--slurm-cpus", type=int, metavar="N", help="CPU cores per job, the run's torch threads (default 4)")
    g.add_argument("--slurm-time", type=int, metavar="MIN",
                   help="time limit per job in minutes (default 240, or the partition's limit where shorter; at "
                        "least 3); a job stopped at it is requeued and resumes from its checkpoints, at most 3 times")
    g.add_argument("--slurm-mem", type=float, metavar="GB", help="memory per job (default: the partition's)")
    g.add_argument("--slurm-max-jobs", type=int, metavar="N",
                   help="at most N jobs of an array running at once (default: the cluster's limits)")
    g.add_argument("--slurm-signal-delay", type=int, metavar="S",
                   help="Slurm signals a job S seconds before its time limit (up to 60 s earlier) so that it is "
                        "requeued (default 90; with a limit under 4 minutes, what leaves a job 60 s to start)")
    g.add_argument("--slurm-folder", metavar="DIR", help="submitit's folder: each job's pickle and logs in DIR/<job id>/ "
                                                         "(default: OUT/slurm)")
    g.add_argument("--submitit-local", action="store_true",
                   help="the same jobs on this machine through submitit's local executor, all at once (to try "
                        "the cluster path; takes --slurm-gpus, --slurm-cpus, --slurm-time, --slurm-folder)")
