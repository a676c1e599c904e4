"""Command line: ``poisonedencoder demo | run | craft | pretrain | evaluate | scan | sweep | claims``."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .parser import _CLUSTER_OPTIONS, build_parser
from ..core.errors import UserError
from ..core.errors import preview as _preview
from ..core.io import os_error_message
from ..core.folders import claim_dir

__all__ = ["build_parser", "main"]


def _cluster(args, cfg: dict, out: Path, torchrun: bool):
    """The :class:`~poisonedencoder.studies.cluster.Cluster` the options ask for, or None; a combination
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
    from ..api import cluster

    kw = {field: getattr(args, attr) for _f, attr, field in given}
    return cluster(cfg, out, slurm, local, **kw)  # checks the device and submission before any work


def _check_jobs(args) -> None:
    jobs = getattr(args, "jobs", 1)
    if not 1 <= jobs <= 64:
        flag = "--jobs" if args.command == "claims" else "--parallel"
        raise UserError(f"{flag} must be between 1 and 64, got {jobs}")


def _reads_only(args) -> bool:
    """``claims --list``, ``--table`` or ``--record``: reads the claims folder, runs nothing (no device needed)."""
    return args.command == "claims" and bool(args.list or args.table or args.record or args.merge)


def _claims(args, cfg: dict, say, torchrun: bool = False) -> int:
    from ..studies.claims import UNKNOWN, not_here, plan, read_results, read_table, run_claims, text, write_table
    from ..data.location import data_root

    out = Path(args.out or "runs/claims")
    if args.shared_datasets is not None:
        print("note: --shared-datasets is the former name of --data-root (the same folder); use --data-root",
              file=sys.stderr)
    modes = [flag for flag, on in (("--list", args.list), ("--table", args.table), ("--record", args.record),
                                   ("--merge", args.merge), ("--campaign", args.campaign)) if on]
    if len(modes) > 1:
        raise UserError(f"{modes[0]} and {modes[1]} exclude each other: give one")
    if args.write and not args.table:
        raise UserError("--write goes with --table (a run of the arms rewrites the table itself)")
    if args.campaign and args.only:
        raise UserError("--campaign runs the queue's next arms: give no --only")
    if args.doc and not args.merge:
        raise UserError("--doc goes with --merge (the document's section is rewritten from the merged record)")
    if args.merge:
        from .campaign import merge_command

        return merge_command(args, cfg, out, *_user_and_overrides(args))
    if (args.table or args.record) and not out.is_dir():
        raise UserError(f"--out {out} is not a folder: no claims runs to read there (run 'poisonedencoder claims' "
                        "first, or give --out DIR)")
    if args.list:
        from ..studies.claims.campaign import queue

        arms = plan(cfg, reading=True)
        res, why = read_results(cfg, out, arms), not_here(cfg, arms)
        place = {n: i + 1 for i, n in enumerate(queue(cfg, arms))}
        for a in arms:
            r = res.get(a.name)
            state = f"{len(r.runs)}/{r.planned_runs or '?'} runs finished" if r else "not started"
            print(f"{a.name:22s} {state:24s} {a.label}" + (f"  [{' '.join(a.overrides)}]" if a.overrides else "")
                  + (f"  (cannot run here: {why[a.name]})" if a.name in why else "")
                  + (f"  (campaign #{place[a.name]})" if a.name in place else "")
                  + (f"  (group {', '.join(a.groups)})" if a.groups else ""))
        if any(f"={UNKNOWN}" in o for a in arms for o in a.overrides):
            print(f"({UNKNOWN}: a size that follows from the train split of the recipe's dataset, which is not on this "
                  "machine or not decoded yet; a run reads it)")
        return 0
    if args.record:
        from ..studies.claims import record

        n = record(out, args.record, data_root(cfg["data_root"]))
        print(f"recorded {n} runs and the table: {out} -> {args.record}")
        return 0
    if args.table:  # reads only; --write: the table's files rewritten from what is finished
        from ..studies.claims import changed_rows

        arms = plan(cfg, reading=True)
        rows = read_table(cfg, out, arms)
        changed = changed_rows(out, rows)
        if changed:
            print(f"note: {len(changed)} row(s) differ from {out / 'claims.json'} ({', '.join(changed[:4])}"
                  f"{', ...' if len(changed) > 4 else ''}): it was not written from the finished runs under "
                  f"{out / 'arms'} by this code" + ("; rewritten" if args.write else ""), file=sys.stderr)
        if args.write:
            from ..core.folders import check_own_dir

            check_own_dir(out, "claims directory (--out)")  # never over a file of a folder the toolkit did not make
            write_table(cfg, out, arms, rows)
        print(text(rows))
        if args.write:
            print(f"table: {out / 'claims.md'}, {out / 'claims.json'}")
        return 0
    if args.budget is not None and not args.budget > 0:
        raise UserError(f"--budget must be a positive number of seconds, got {args.budget:g}")
    cluster = _cluster(args, cfg, out, torchrun)
    if args.campaign and not Path(args.campaign).is_dir():
        raise UserError(f"--campaign {args.campaign} is not a folder (a record folder: what --record writes)")
    claim_dir(out, "claims directory (--out)")
    only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else None
    user, over = _user_and_overrides(args)
    if args.campaign:
        from ..studies.claims.campaign import run_campaign

        if cluster is not None:
            raise UserError("--campaign runs on this machine within --budget: give no cluster option")
        rows = run_campaign(user, over, out, Path(args.campaign), jobs=args.jobs, budget_s=args.budget, log=say)
        if rows is None:
            return 0
    else:
        rows = run_claims(user, over, out, only, log=say, jobs=args.jobs, budget_s=args.budget, executor=cluster)
    print(text(rows))
    print(f"table: {out / 'claims.md'}, {out / 'claims.json'}")
    return 0


def _user_and_overrides(args) -> tuple[dict, list[str]]:
    from .. import config as C

    user = C.load_yaml(args.config) if getattr(args, "config", None) else {}
    if args.command == "claims" and not _reads_only(args) \
            and not user.get("seeds") and not getattr(args, "seeds", None) \
            and not any(o.startswith("seeds=") for o in args.overrides):
        raise UserError("claims needs a recipe with seeds (e.g. seeds: [0, 1, 2] or --seeds 0,1,2): every row pools seeds")
    given = [(f"--set {_preview(o, 60)}", o) for o in args.overrides]  # (as the user gave it, the override)
    for flag, name, key in ((args.preset, "--preset", "preset"), (_data_root_flag(args), "--data-root", "data_root"),
                            (args.cache_dir, "--cache-dir", "cache_dir"), (args.device, "--device", "device")):
        if flag:
            given.append((f"{name} {_preview(flag, 60)}", f"{key}={json.dumps(flag)}"))  # quoted: a folder named 123 stays text
    if getattr(args, "seeds", None):
        given.append((f"--seeds {_preview(args.seeds, 60)}", f"seeds=[{args.seeds}]"))
    C.check_repeats(given)  # one key twice: the last would win without a word
    return user, (["preset=demo"] if args.command == "demo" else []) + [o for _, o in given]


def _data_root_flag(args) -> str | None:
    """``--data-root``, or its former name on ``claims``, ``--shared-datasets`` (which must then be
    a folder, and not differ from ``--data-root`` where both are given)."""
    shared = getattr(args, "shared_datasets", None)
    if shared is None:
        return args.data_root
    if not Path(shared).is_dir():
        raise UserError(f"--shared-datasets {shared} is not a folder")
    if args.data_root is not None and Path(args.data_root).absolute() != Path(shared).absolute():
        raise UserError("--shared-datasets is the former name of --data-root: give one of them")
    return shared


def _resolve(args) -> tuple[dict, Path]:
    from ..api import load_config

    cfg = load_config(*_user_and_overrides(args))
    out = Path(args.out) if args.out else Path("runs") / (Path(args.config).stem if getattr(args, "config", None) else "demo")
    return cfg, out


_OUTSIDE_OPTIONS = ("clean_encoder", "arch", "width", "prefix", "normalize", "trust_torchscript")


def _outside_encoders(args, cfg: dict) -> dict:
    """``evaluate --encoder PATH [--clean-encoder PATH]``: the loaded encoders and what was loaded,
    ``{"poisoned": (module, info), "clean": (module, info)}``; empty without ``--encoder``."""
    if args.command != "evaluate":
        return {}
    if not args.encoder:
        given = [o for o in _OUTSIDE_OPTIONS if getattr(args, o) not in (None, False)]
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} needs --encoder PATH")
        return {}
    from ..api import load_encoders

    return load_encoders(cfg, args.encoder, args.clean_encoder, args.arch, args.width, args.prefix, args.normalize,
                         args.trust_torchscript)


MAX_ERROR_CHARS = 2000


def _cut(message: str) -> str:
    """An error message as one line of at most :data:`MAX_ERROR_CHARS` characters (a message that
    echoes a user's value should preview it; this is the last guard)."""
    line = " ".join(message.split("\n"))
    return line if len(line) <= MAX_ERROR_CHARS else line[:MAX_ERROR_CHARS] + f"... ({len(line)} characters)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "scan":  # a folder, not a configuration
            from .scan import main as scan

            return scan(args, lambda s: print(s, flush=True))
        from .. import api
        from ..ssl import distributed as D

        if args.command == "claims" and args.config is None:  # the recipe shipped with the package, from any folder
            from ..studies.claims.arms import default_recipe

            args.config = str(default_recipe())
        cfg, out = _resolve(args)
        env, cfg["device"] = D.init_from_env(cfg["device"])  # under torchrun: join the process group
        from ..ssl.pretrain import check_device

        if getattr(args, "slurm", None) is None and not getattr(args, "submitit_local", False) and not _reads_only(args):
            check_device(cfg["device"])  # before any work (a cluster's job checks it on its node; reading needs none)
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
        from ..experiment.rundir import RunDir

        done = lambda d: say(f"done in {time.time() - t0:.0f}s: {RunDir(d).metrics}, {RunDir(d).report}")  # noqa: E731
        if args.command == "sweep":
            user, over = _user_and_overrides(args)
            api.sweep(user, args.param, args.values, out, over, jobs=args.jobs, executor=cluster, log=say)
            print(f"done in {time.time() - t0:.0f}s: {out / 'sweep.csv'}, {out / 'sweep.png'}")
            return 0
        outside = _outside_encoders(args, cfg)  # loaded and checked before any work
        export = getattr(args, "export_imagefolder", None)
        if export:
            from ..attack.export import check_export_dir

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
        if args.command == "scan":
            print("interrupted: the scan did not finish (its scan.json, written last, is absent); a --train "
                  "encoder is checkpointed every epoch: run the same command to resume", file=sys.stderr)
            return 130
        print("interrupted: pre-training is checkpointed every pretrain.checkpoint_every epochs; run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
