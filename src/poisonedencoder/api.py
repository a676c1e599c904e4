"""The Python API: the CLI's stages as functions (``import poisonedencoder as pe``).

>>> import poisonedencoder as pe                                      # doctest: +SKIP
>>> cfg = pe.load_config("configs/digits_demo.yaml", ["seeds=null", "pretrain.epochs=20"])
>>> pe.craft(cfg, "runs/api", export_imagefolder="exported/")        # poisons + the image folder
>>> enc, info = pe.load_encoder("my_encoder.pt", arch="resnet18")     # trained on exported/ elsewhere
>>> pe.evaluate_encoder(enc, cfg, out="runs/api")["ASR"]

Each function takes a configuration as :func:`load_config` returns it (or anything it accepts: a
YAML path or a mapping) and a run directory ``out``, and returns plain data (dicts, paths), as the
CLI's commands do; errors are :class:`~poisonedencoder.core.errors.UserError` with a one-line message.
A configuration with ``seeds`` runs one experiment per seed, as ``--seeds`` does.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from . import config as C
from .core.errors import UserError


def load_config(config: str | Path | dict | None = None, overrides: Iterable[str] = ()) -> dict:
    """The resolved, validated configuration: defaults <- preset <- ``config`` (a YAML file, whose
    relative paths count from its folder, or a mapping) <- ``overrides`` (``"pretrain.epochs=10"``,
    as ``--set``). A configuration this function returned may be passed again (it resolves to itself)."""
    if config is None:
        user = {}
    elif isinstance(config, (str, Path)):
        user = C.load_yaml(config)
    elif isinstance(config, dict):
        user = config
    else:
        raise UserError(f"config must be a YAML path or a mapping, got {type(config).__name__}")
    return C.resolve(user, list(overrides))


def runner(config, out: str | Path, log: Callable[[str], None] = print):
    """The run directory ``out`` of ``config`` with its stages: a
    :class:`~poisonedencoder.studies.seeds.SeedRuns` when the configuration has ``seeds``, else an
    :class:`~poisonedencoder.experiment.pipeline.Experiment` (both check and stamp ``out`` first)."""
    from .experiment.pipeline import Experiment
    from .studies.seeds import SeedRuns

    cfg = load_config(config)
    return SeedRuns(cfg, out, log=log) if cfg["seeds"] else Experiment(cfg, out, log=log)


def check_one_run(cfg: dict, what: str, hint: str | None = None) -> None:
    """A :class:`UserError` unless ``cfg`` is one run (no ``seeds``, or one): ``what`` works on one
    run, ``hint`` (default: the configuration keys) says how to give one seed."""
    if cfg["seeds"] and len(cfg["seeds"]) > 1:
        hint = hint or f"seeds=[{cfg['seeds'][0]}] or seeds=null"
        raise UserError(f"{what} works on one run: give one seed ({hint}), got {len(cfg['seeds'])}")


def one_run(config, out: str | Path, log: Callable[[str], None] = print, what: str = "this",
            hint: str | None = None, over_seeds: bool = False):
    """The single :class:`~poisonedencoder.experiment.pipeline.Experiment` of ``config`` (its seed, or its one
    ``seeds`` in ``out/seed_<s>/``). ``over_seeds``: ``out`` is stamped as a run over that one seed
    (as the command line's ``--seeds S`` does)."""
    from .experiment.pipeline import Experiment
    from .experiment.rundir import RunDir
    from .studies.seeds import SeedRuns, seed_config

    cfg = load_config(config)
    check_one_run(cfg, what, hint)
    if cfg["seeds"] and over_seeds:
        return SeedRuns(cfg, out, log=log).runs[0]
    if cfg["seeds"]:
        return Experiment(seed_config(cfg, cfg["seeds"][0]), RunDir(out).seed(cfg["seeds"][0]).path, log=log)
    return Experiment(cfg, out, log=log)


def run(config, out: str | Path, jobs: int = 1, executor=None, log: Callable[[str], None] = print) -> dict:
    """Every stage of the run (or of each seed's run, then the pooled result), as ``run``: ``jobs`` > 1
    runs seeds at once, each in a worker process; ``executor`` (:func:`cluster`) makes every run a
    job. Returns the metrics written to ``out/metrics.json``."""
    from .studies.seeds import SeedRuns

    r = runner(config, out, log)
    if isinstance(r, SeedRuns) and (jobs > 1 or executor is not None):
        return r.run(jobs=jobs, executor=executor)
    if executor is not None:
        from .studies.parallel import Unit, run_units
        from .experiment.report import format_table

        res = run_units([Unit(r.cfg, r.out)], log=log, name="run", executor=executor)
        if res.failed:
            raise UserError(res.failed[0][1])
        m = r.dir.read_metrics()
        log(format_table(m))
        return m
    if jobs > 1:
        raise UserError("--parallel runs seeds at once: give several (--seeds 0,1,2)")
    return r.run()


def cluster(config, out: str | Path, partition: str | None = None, local: bool = False, **options):
    """A :class:`~poisonedencoder.studies.cluster.Cluster` for :func:`run` and :func:`sweep`: Slurm jobs on
    ``partition`` (``"default"``: the cluster's default), or submitit's local executor (``local``).
    ``options``: its fields (``gpus_per_job``, ``cpus_per_job``, ``timeout_min``, ``mem_gb``,
    ``array_parallelism``, ``signal_delay_s``, ``folder``; defaults: ``out/slurm``, one GPU with
    device cuda, 240 minutes or the partition's time limit where shorter). Checks the device, that
    jobs can be submitted, and on Slurm the partition and its time limit (``sinfo``), before any work."""
    from .studies.cluster import Cluster

    cfg = load_config(config)
    options.setdefault("folder", Path(out) / "slurm")
    options.setdefault("gpus_per_job", 1 if str(cfg["device"]).startswith("cuda") else 0)
    if not local and partition is not None and partition != "default":
        options["partition"] = partition
    c = Cluster(kind="local" if local else "slurm", **options)
    c.check_devices([cfg["device"]])
    c.check_submit()
    return c.fit_partition("timeout_min" in options)


def sweep(config, param: str, values: str | list, out: str | Path, overrides: Iterable[str] = (), jobs: int = 1,
          executor=None, log: Callable[[str], None] = print) -> list[dict]:
    """One run (or one per seed) per value of ``param`` (``values``: a list, or the command line's
    comma-separated text), as ``sweep``: ``out/sweep.csv`` and ``sweep.png``; returns the rows."""
    from .data.datasets import DEFAULT_CACHE
    from .core.folders import claim_dir, ensure_writable_dir
    from .studies.sweep import check_values, parse_values, run_sweep

    user = C.load_yaml(config) if isinstance(config, (str, Path)) else dict(config or {})
    cfg = C.resolve(user, list(overrides))
    values = parse_values(values) if isinstance(values, str) else check_values(list(values))  # before any work
    claim_dir(out, "sweep directory (--out)")
    ensure_writable_dir(cfg["cache_dir"] or DEFAULT_CACHE, "cache directory (--cache-dir)")
    return run_sweep(user, list(overrides), param, values, out, log=log, jobs=jobs, executor=executor)


def craft(config, out: str | Path, export_imagefolder: str | Path | None = None,
          log: Callable[[str], None] = print) -> dict | None:
    """Target inputs, reference inputs and poisoning inputs into ``out/poisons/`` (``craft``).
    ``export_imagefolder``: also write the pre-training set (clean and poisoning inputs) as an image
    folder there (``--export-imagefolder``; one seed only). Returns the craft manifest (``None`` over
    several seeds: each seed's is in ``out/seed_<s>/poisons/manifest.json``)."""
    if export_imagefolder is not None:
        from .attack.export import check_export_dir

        dest = check_export_dir(export_imagefolder)
        exp = one_run(config, out, log, "export_imagefolder")
        exp.export_imagefolder(dest)
        return json.loads(exp.dir.manifest.read_text())
    return runner(config, out, log).craft()


def pretrain(config, out: str | Path, which: str = "both", log: Callable[[str], None] = print) -> dict | None:
    """Pre-train the clean encoder (shared cache) and/or the poisoned one (``which``: ``both``,
    ``clean``, ``poisoned``), crafting first where needed. Returns ``{"clean": path, "poisoned": path}``
    of their ``encoder.pt`` (``None`` over several seeds)."""
    if which not in ("both", "clean", "poisoned"):
        raise UserError(f"which must be both, clean or poisoned, got {which!r}")
    return runner(config, out, log).pretrain(which)


def evaluate(config, out: str | Path, log: Callable[[str], None] = print) -> dict:
    """The whole run (every missing stage first): CA, PA, ASR, clean ASR with their intervals, the
    per-target margins, per task; the dict written to ``out/metrics.json`` (over seeds: pooled)."""
    return runner(config, out, log).evaluate()


def evaluate_encoder(encoder, config, clean_encoder=None, out: str | Path | None = None,
                     log: Callable[[str], None] = print) -> dict:
    """Measure an encoder trained anywhere on the target inputs of ``config``'s run.

    ``encoder`` and ``clean_encoder`` are ``torch.nn.Module`` objects that take images in [0, 1]
    (``(N, 3, H, W)``, ``H = W = pretrain.image_size``) and return features ``(N, D)``; the module is
    called as it is, so one that expects normalized inputs should be wrapped
    (``poisonedencoder.experiment.external.OutsideEncoder(module, "imagenet")``; :func:`load_encoder` does this
    for a file). Without ``clean_encoder``, CA, clean ASR and the clean margins are ``None``.

    ``out``: the run directory whose craft (target inputs) to use, crafted there if absent, and where
    metrics.json and report.md are written; ``None``: a temporary folder, deleted afterwards (the
    craft of a configuration is deterministic, so the target inputs are the same). An encoder from
    :func:`load_encoder` has its file's path and sha256 recorded (``encoder_files``). Returns the
    metrics as a plain dict (``CA``, ``PA``, ``ASR``, ``clean_ASR``, ``intervals``, ``margins``, ``tasks``).
    """
    import torch

    for name, e in (("encoder", encoder), ("clean_encoder", clean_encoder)):
        if e is not None and not isinstance(e, torch.nn.Module):
            raise UserError(f"{name} must be a torch.nn.Module, got {type(e).__name__} (for a file: pe.load_encoder)")
    files = {k: e.source for k, e in (("poisoned", encoder), ("clean", clean_encoder)) if hasattr(e, "source")}
    if out is None:
        with tempfile.TemporaryDirectory(prefix="poisonedencoder-") as tmp:
            return one_run(config, tmp, log, "evaluate_encoder").evaluate_encoders(encoder, clean_encoder, files)
    return one_run(config, out, log, "evaluate_encoder").evaluate_encoders(encoder, clean_encoder, files)


def load_encoder(path: str | Path, arch: str | None = None, width: int = 32, prefix: str | None = None,
                 normalize: str | None = None, image_size: int = 32, trust_torchscript: bool = False):
    """A state_dict (of ``arch``), or a TorchScript file where ``trust_torchscript`` (its code runs),
    as a module for :func:`evaluate_encoder`, and what was loaded (path, sha256, ...):
    :func:`poisonedencoder.experiment.external.load_encoder`."""
    from .experiment.external import load_encoder as load

    return load(path, arch=arch, width=width, prefix=prefix, normalize=normalize, image_size=image_size,
                trust_torchscript=trust_torchscript)


def load_encoders(config, encoder: str | Path, clean_encoder: str | Path | None = None, arch: str | None = None,
                  width: int | None = None, prefix: str | None = None, normalize: str | None = None,
                  trust_torchscript: bool = False) -> dict:
    """:func:`load_encoder` for ``config``'s run (``evaluate --encoder``): ``{"poisoned": (module,
    info)}``, with ``"clean"`` when ``clean_encoder`` is given; ``width`` defaults to the
    configuration's ``pretrain.width``, the image size is its ``pretrain.image_size``."""
    p = load_config(config)["pretrain"]
    kw = {"arch": arch, "width": width if width is not None else p["width"], "prefix": prefix,
          "normalize": normalize, "image_size": p["image_size"], "trust_torchscript": trust_torchscript}
    out = {"poisoned": load_encoder(encoder, **kw)}
    if clean_encoder:
        out["clean"] = load_encoder(clean_encoder, **kw)
    return out
