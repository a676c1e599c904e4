"""Command line: ``poisonedencoder demo | run | craft | pretrain | evaluate``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__
from .errors import UserError
from .io import claim_dir, os_error_message


def _add_common(p: argparse.ArgumentParser, config: bool = True) -> None:
    if config:
        p.add_argument("config", help="experiment YAML file (see configs/)")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set pretrain.epochs=10 (repeatable)")
    p.add_argument("--preset", help="preset: paper, cpu, gpu or demo")
    p.add_argument("--data-root", help="where torchvision datasets are (or are downloaded to)")
    p.add_argument("--cache-dir", help="cache for decoded datasets and shared clean encoders")
    p.add_argument("--device", help="cpu or cuda[:N]")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2: one run per seed in OUT/seed_<s>/ and the "
                                   "pooled result with 95%% intervals in OUT/ (config key seeds)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="poisonedencoder", description="PoisonedEncoder: data poisoning of contrastive pre-training.")
    ap.add_argument("--version", action="version", version=f"poisonedencoder {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="digits end to end in 2-5 minutes on 2 CPU cores: prints CA / PA / ASR")
    _add_common(p, config=False)
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
                           help="evaluate this poisoned encoder instead of the toolkit's: a TorchScript file or a "
                                "state_dict (with --arch)")
            g.add_argument("--clean-encoder", metavar="PATH",
                           help="the clean encoder to compare with (CA, clean ASR, clean margins); without it they "
                                "are reported as not measured")
            g.add_argument("--arch", help="architecture of a state_dict: resnet18 | resnet50 (torchvision, fc "
                                          "removed) | resnet18-cifar | resnet18w | cnn7 (the toolkit's backbones) | "
                                          "timm:NAME")
            g.add_argument("--width", type=int, help="cnn7's base width, resnet18w's first-stage channels (default: "
                                                     "the config's pretrain.width)")
            g.add_argument("--prefix", help="take the state_dict's keys under this prefix, e.g. 'net.' (default: "
                                            "strip module./backbone./encoder./model. where they fit)")
            g.add_argument("--normalize", choices=("imagenet", "cifar10", "none"),
                           help="normalization of the [0, 1] images before the encoder (default: none for an encoder "
                                "that stores its own input statistics, as the toolkit's do; imagenet otherwise)")
    p = sub.add_parser("sweep", help="one run per value of a config key; sweep.csv and sweep.png")
    _add_common(p)
    _add_parallel(p, "--parallel")
    _add_cluster(p)
    p.add_argument("--param", required=True, help="config key, e.g. attack.poisoning_rate")
    p.add_argument("--values", required=True, help="comma-separated values, e.g. 0.01,0.03,0.1")
    p = sub.add_parser("claims", help="the paper's claims, one row each with a verdict: runs what is missing "
                                      "(resumable), prints the table, writes OUT/claims.md and claims.json")
    p.add_argument("config", nargs="?", default="configs/digits_works.yaml",
                   help="the recipe every arm varies (default: configs/digits_works.yaml)")
    _add_common(p, config=False)
    p.add_argument("--only", help="comma-separated arms to run (see --list); the table shows every row")
    p.add_argument("--list", action="store_true", help="print the arms, their overrides and what is finished; run nothing")
    p.add_argument("--table", action="store_true", help="print the table of what is finished; run nothing")
    _add_parallel(p, "--jobs")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="wall-time bound: start no run that would end past it (by the runs finished so far), stop "
                        "the ones still going at it (checkpoints stay; the same command resumes), then the table")
    _add_cluster(p)
    p.add_argument("--record", metavar="DIR", help="copy every finished run's record (metrics, config, timings, "
                                                  "manifest; no encoders or images) and the table into DIR; run nothing")
    p.add_argument("--shared-datasets", metavar="DIR",
                   help="folder holding eurosat/ and facemask/ (their rows are not measurable without it)")
    return ap


def _add_parallel(p, flag: str) -> None:
    p.add_argument(flag, dest="jobs", type=int, default=1, metavar="N",
                   help="independent runs at once, each a process on the config's device (on a CPU with cores/N "
                        "threads; on 2 cores 2 one-thread runs finish 1.6x the runs per hour of one: "
                        "benchmarks/parallel_runs.py; on a GPU they share it). Default 1")


_CLUSTER_OPTIONS = (("--slurm-gpus", "slurm_gpus", "gpus_per_job"), ("--slurm-cpus", "slurm_cpus", "cpus_per_job"),
                    ("--slurm-time", "slurm_time", "timeout_min"), ("--slurm-mem", "slurm_mem", "mem_gb"),
                    ("--slurm-max-jobs", "slurm_max_jobs", "array_parallelism"), ("--slurm-folder", "slurm_folder", "folder"))


def _add_cluster(p) -> None:
    g = p.add_argument_group("runs as cluster jobs (submitit; pip install 'poisonedencoder[cluster]'; docs/DESIGN.md)")
    g.add_argument("--slurm", metavar="PARTITION",
                   help="every run a Slurm job on PARTITION ('default': the cluster's default), all of them one job "
                        "array (a sweep's or the table's shared clean encoders in one before); waits for them; the "
                        "same command resumes. Run folders and --cache-dir must be on storage the nodes share")
    g.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per job (default: 1 with device cuda, else 0)")
    g.add_argument("--slurm-cpus", type=int, metavar="N", help="CPU cores per job, the run's torch threads (default 4)")
    g.add_argument("--slurm-time", type=int, metavar="MIN",
                   help="time limit per job in minutes (default 240); a job stopped at it is requeued and resumes "
                        "from its checkpoints, at most 3 times")
    g.add_argument("--slurm-mem", type=float, metavar="GB", help="memory per job (default: the partition's)")
    g.add_argument("--slurm-max-jobs", type=int, metavar="N",
                   help="at most N jobs of an array running at once (default: the cluster's limits)")
    g.add_argument("--slurm-folder", metavar="DIR", help="submitit's folder: each job's pickle and logs in DIR/<job id>/ "
                                                         "(default: OUT/slurm)")
    g.add_argument("--submitit-local", action="store_true",
                   help="the same jobs on this machine through submitit's local executor, all at once (to try "
                        "the cluster path; takes --slurm-gpus, --slurm-cpus, --slurm-time, --slurm-folder)")


def _cluster(args, cfg: dict, out: Path, torchrun: bool):
    """The :class:`~poisonedencoder.cluster.Cluster` the options ask for, or None; a combination
    that makes no sense is a :class:`UserError`."""
    slurm, local = getattr(args, "slurm", None), getattr(args, "submitit_local", False)
    given = [(flag, attr, field) for flag, attr, field in _CLUSTER_OPTIONS if getattr(args, attr, None) is not None]
    if slurm is None and not local:
        if given:
            raise UserError(f"{given[0][0]} needs --slurm PARTITION (or --submitit-local)")
        return None
    flag = "--slurm" if slurm is not None else "--submitit-local"
    if slurm is not None and local:
        raise UserError("--slurm and --submitit-local exclude each other: give one")
    if torchrun:
        raise UserError(f"{flag} submits jobs of its own; do not launch it under torchrun")
    if args.jobs > 1:
        other = "--jobs" if args.command == "claims" else "--parallel"
        raise UserError(f"{flag} makes every run a job of its own; {other} N runs them on this machine: give one")
    if getattr(args, "budget", None) is not None:
        raise UserError(f"{flag}: a job's bound is its time limit (--slurm-time MIN), not --budget")
    from .api import cluster

    kw = {field: getattr(args, attr) for _f, attr, field in given}
    return cluster(cfg, out, slurm, local, **kw)  # checks the device and submission before any work


def _check_jobs(args) -> None:
    jobs = getattr(args, "jobs", 1)
    if not 1 <= jobs <= 64:
        flag = "--jobs" if args.command == "claims" else "--parallel"
        raise UserError(f"{flag} must be between 1 and 64, got {jobs}")


def _claims(args, cfg: dict, say, torchrun: bool = False) -> int:
    from .claims import plan, read_results, run_claims, text, write_table

    out = Path(args.out or "runs/claims")
    shared = args.shared_datasets
    if shared is not None and not Path(shared).is_dir():
        raise UserError(f"--shared-datasets {shared} is not a folder")
    if args.list:
        arms = plan(cfg, shared)
        res = read_results(cfg, out, arms)
        for a in arms:
            r = res.get(a.name)
            state = f"{len(r.runs)}/{r.planned_runs or '?'} runs finished" if r else "not started"
            print(f"{a.name:22s} {state:24s} {a.label}" + (f"  [{' '.join(a.overrides)}]" if a.overrides else ""))
        return 0
    if args.record:
        from .claims import record

        n = record(out, args.record)
        print(f"recorded {n} runs and the table: {out} -> {args.record}")
        return 0
    if args.table:
        print(text(write_table(cfg, out, plan(cfg, shared))))
        return 0
    if args.budget is not None and not args.budget > 0:
        raise UserError(f"--budget must be a positive number of seconds, got {args.budget:g}")
    cluster = _cluster(args, cfg, out, torchrun)
    claim_dir(out, "claims directory (--out)")
    only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else None
    user, over = _user_and_overrides(args)
    rows = run_claims(user, over, out, only, shared, log=say, jobs=args.jobs, budget_s=args.budget, executor=cluster)
    print(text(rows))
    print(f"table: {out / 'claims.md'}, {out / 'claims.json'}")
    return 0


def _user_and_overrides(args) -> tuple[dict, list[str]]:
    from . import config as C

    user = C.load_yaml(args.config) if getattr(args, "config", None) else {}
    if args.command == "claims" and not getattr(args, "list", False) and not getattr(args, "table", False) \
            and not user.get("seeds") and not getattr(args, "seeds", None) \
            and not any(o.startswith("seeds=") for o in args.overrides):
        raise UserError("claims needs a recipe with seeds (e.g. seeds: [0, 1, 2] or --seeds 0,1,2): every row pools seeds")
    overrides = list(args.overrides)
    if args.command == "demo":
        overrides.insert(0, "preset=demo")
    for flag, key in ((args.preset, "preset"), (args.data_root, "data_root"), (args.cache_dir, "cache_dir"),
                      (args.device, "device")):
        if flag:
            overrides.append(f"{key}={json.dumps(flag)}")  # quoted: a folder named 123 or a: b stays text
    if getattr(args, "seeds", None):
        overrides.append(f"seeds=[{args.seeds}]")
    return user, overrides


def _resolve(args) -> tuple[dict, Path]:
    from .api import load_config

    cfg = load_config(*_user_and_overrides(args))
    out = Path(args.out) if args.out else Path("runs") / (Path(args.config).stem if getattr(args, "config", None) else "demo")
    return cfg, out


_OUTSIDE_OPTIONS = ("clean_encoder", "arch", "width", "prefix", "normalize")


def _outside_encoders(args, cfg: dict) -> dict:
    """``evaluate --encoder PATH [--clean-encoder PATH]``: the loaded encoders and what was loaded,
    ``{"poisoned": (module, info), "clean": (module, info)}``; empty without ``--encoder``."""
    if args.command != "evaluate":
        return {}
    if not args.encoder:
        given = [o for o in _OUTSIDE_OPTIONS if getattr(args, o) is not None]
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} needs --encoder PATH")
        return {}
    from .api import load_encoders

    return load_encoders(cfg, args.encoder, args.clean_encoder, args.arch, args.width, args.prefix, args.normalize)


MAX_ERROR_CHARS = 2000


def _cut(message: str) -> str:
    """An error message as one line of at most :data:`MAX_ERROR_CHARS` characters (a message that
    echoes a user's value should preview it; this is the last guard)."""
    line = " ".join(message.split("\n"))
    return line if len(line) <= MAX_ERROR_CHARS else line[:MAX_ERROR_CHARS] + f"... ({len(line)} characters)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from . import api
        from .ssl import distributed as D

        cfg, out = _resolve(args)
        env, cfg["device"] = D.init_from_env(cfg["device"])  # under torchrun: join the process group
        from .ssl.pretrain import check_device

        if getattr(args, "slurm", None) is None and not getattr(args, "submitit_local", False):
            check_device(cfg["device"])  # before any work (a cluster's job checks it on its node)
        if env.active and args.command in ("sweep", "demo"):
            raise UserError(f"'{args.command}' runs in one process; launch run, craft, pretrain or evaluate under torchrun")
        say = (lambda s: print(s, flush=True)) if env.is_main else (lambda _: None)
        t0 = time.time()
        _check_jobs(args)
        if env.active and getattr(args, "jobs", 1) > 1:
            raise UserError("--parallel runs worker processes of its own; under torchrun use one process per rank")
        if args.command == "claims":
            return _claims(args, cfg, say, env.active)
        cluster = _cluster(args, cfg, out, env.active) if args.command in ("run", "sweep") else None
        from .rundir import RunDir

        done = lambda d: say(f"done in {time.time() - t0:.0f}s: {RunDir(d).metrics}, {RunDir(d).report}")  # noqa: E731
        if args.command == "sweep":
            user, over = _user_and_overrides(args)
            api.sweep(user, args.param, args.values, out, over, jobs=args.jobs, executor=cluster, log=say)
            print(f"done in {time.time() - t0:.0f}s: {out / 'sweep.csv'}, {out / 'sweep.png'}")
            return 0
        outside = _outside_encoders(args, cfg)  # loaded and checked before any work
        export = getattr(args, "export_imagefolder", None)
        if export:
            from .attack.export import check_export_dir

            export = check_export_dir(export)
        if outside or export:
            hint = f"--seeds {cfg['seeds'][0]}" if cfg["seeds"] else None
            exp = api.one_run(cfg, out, say, "--encoder" if outside else "--export-imagefolder", hint, over_seeds=True)
        if args.command in ("demo", "run"):
            api.run(cfg, out, getattr(args, "jobs", 1), cluster, log=say)
            done(out)
        elif export:
            exp.export_imagefolder(export)  # crafts first (or reuses the craft)
        elif outside:
            exp.evaluate_encoders(outside["poisoned"][0], outside["clean"][0] if "clean" in outside else None,
                                  {k: v[1] for k, v in outside.items()})
            done(exp.out)
        elif args.command == "craft":
            api.craft(cfg, out, log=say)
        elif args.command == "pretrain":
            api.pretrain(cfg, out, args.which, log=say)
        else:
            api.evaluate(cfg, out, log=say)
        D.shutdown()
        return 0
    except UserError as e:
        print(f"error: {_cut(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a folder that became unwritable: one line, naming the path
        print(f"error: {_cut(os_error_message(e))}", file=sys.stderr)
        return 2
    except RecursionError:  # input nested deeper than a check caught: still one line
        print("error: the input is nested too deeply (RecursionError)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: pre-training is checkpointed every pretrain.checkpoint_every epochs; run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
