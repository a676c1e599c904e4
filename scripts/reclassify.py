"""The same encoders judged by other downstream classifiers: for each finished run, a sibling run
directory per classifier (``RUN_knn``, ``RUN_linear``, ...) that shares the run's poisoning
inputs and poisoned encoder (hard links, or copies across file systems) and the cached clean
encoder, and evaluates CA, PA, ASR and margins with ``downstream.classifier`` (and any other
``downstream.*`` setting) changed. Nothing is pre-trained again, so the classifiers are compared
on exactly the same features and target inputs (pair them with scripts/regime_table.py).

    python scripts/reclassify.py runs/study/base --classifier knn --classifier linear
    python scripts/reclassify.py runs/study/base --classifier mlp --set downstream.epochs=500 --suffix mlp500

A run made with ``--seeds`` is taken seed by seed (``RUN/seed_<s>`` -> ``RUN_knn/seed_<s>``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def _link_tree(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    for p in src.rglob("*"):
        rel = p.relative_to(src)
        if any(part in skip for part in rel.parts):
            continue
        q = dst / rel
        if p.is_dir():
            q.mkdir(parents=True, exist_ok=True)
        elif not q.exists():
            q.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(p, q)
            except OSError:
                shutil.copy2(p, q)


def reclassify(run: Path, out: Path, overrides: list[str], snapshots: bool) -> dict:
    """Evaluate the encoders of ``run`` into ``out`` with ``overrides`` (``downstream.*`` only)."""
    import yaml

    from poisonedencoder import config as C
    from poisonedencoder.core.errors import UserError
    from poisonedencoder.experiment.pipeline import Experiment
    from poisonedencoder.experiment.rundir import RunDir

    for o in overrides:
        if not (o.startswith("downstream.") or o.startswith("pretrain.threads=")):
            raise UserError(f"--set {o}: only downstream.* settings (and pretrain.threads) can change "
                            "without pre-training again")
    src = RunDir(run)
    if not src.metrics.is_file():
        raise UserError(f"{run} holds no finished run (no metrics.json)")
    cfg = yaml.safe_load(src.config.read_text())
    cfg = C.resolve(cfg, overrides)
    exp = Experiment(cfg, out)  # claims the folder for this run (its fingerprint) before anything is linked in
    _link_tree(src.poisons, exp.dir.poisons)
    _link_tree(src.poisoned_encoder, exp.dir.poisoned_encoder, skip=() if snapshots else ("snapshots",))
    return exp.evaluate()


def main(argv: list[str] | None = None) -> int:
    from poisonedencoder.core.errors import UserError
    from poisonedencoder.experiment.rundir import RunDir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="finished run directories (or outputs of run --seeds)")
    ap.add_argument("--classifier", action="append", default=[], help="mlp | linear | knn (repeatable)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="downstream.KEY=VALUE",
                    help="downstream.* settings; pretrain.threads=N sets the CPU threads")
    ap.add_argument("--suffix", help="name of the sibling directory (RUN_<suffix>); default: the classifier")
    ap.add_argument("--snapshots", action="store_true", help="also evaluate the poisoned encoder's snapshots")
    args = ap.parse_args(argv)
    if not args.classifier and not args.overrides:
        ap.error("give --classifier and/or --set downstream.KEY=VALUE")
    if args.suffix and len(args.classifier) > 1:
        ap.error("--suffix names one variant; give one --classifier with it")
    variants = [(c, [f"downstream.classifier={c}", *args.overrides]) for c in args.classifier] or [
        (args.suffix or "variant", list(args.overrides))]
    try:
        for spec in args.runs:
            run = Path(spec)
            seeds = RunDir(run).finished_seed_dirs()
            for name, overrides in variants:
                sib = run.parent / f"{run.name}_{args.suffix or name}"
                for r, o in ([(s, sib / s.name) for s in seeds] if seeds else [(run, sib)]):
                    m = reclassify(r, o, overrides, args.snapshots)
                    print(f"{o}: ASR {m['ASR']:.3f}, CA {m['CA']:.3f}, PA {m['PA']:.3f}", flush=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
