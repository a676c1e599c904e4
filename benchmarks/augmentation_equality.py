"""Do the batched augmentation and torchvision's per-sample pipeline train equally good encoders?

For each seed, pre-trains two clean encoders that differ only in ``pretrain.augmentation``
(``batched`` | ``per_sample``), with the ``cpu`` preset (CNN7 width 16, 5,000 clean inputs) at
reduced epochs, then trains the preset's downstream classifier (MLP, 10,000 train inputs) on each
frozen encoder and measures clean accuracy (CA) on the whole test split. The two pipelines are run
in alternating order (seed 0: batched first; seed 1: per_sample first; ...), so drift on a shared
machine hits both alike. Reports per run CA with its 95% Wilson interval, the mean over seeds with a
t interval, the paired difference (per_sample - batched) with a t interval, and seconds per epoch.

    python benchmarks/augmentation_equality.py --dataset cifar10-folder --data-root DATA \\
        --seeds 0,1,2 --epochs 30 --precision fp32 --out runs/augmentation_equality

``DATA``: the data root that holds ``cifar10/{train,test}/<class>/*`` (default: the environment
variable ``POISONEDENCODER_DATA``, else ``~/.cache/poisonedencoder/data``; docs/CONFIG.md).

Encoders are cached under ``--cache-dir`` like any clean encoder; a rerun reuses them (and the
seconds measured when they were trained, from ``seconds.txt``).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from poisonedencoder.ssl.precision import cpu_name


EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) loss [-\d.]+ \(([\d.]+)s\)")


def epoch_seconds(lines: list[str]) -> list[float]:
    """The per-epoch times the pre-training loop logs (every tenth of the epochs)."""
    return [float(m.group(3)) for m in map(EPOCH_LINE.search, lines) if m]


def run_one(args, seed: int, augmentation: str, log) -> dict:
    from poisonedencoder import config as C
    from poisonedencoder.core import stats
    from poisonedencoder.downstream import extract_features, predict, train_classifier
    from poisonedencoder.experiment.evaluation import train_subset
    from poisonedencoder.experiment.pipeline import Experiment, clean_encoder_dir, pretrain_seconds
    from poisonedencoder.ssl.pretrain import load_backbone

    cfg = C.resolve({"preset": "cpu", "seed": seed, "pretrain_data": {"dataset": args.dataset},
                     "tasks": [{"dataset": args.dataset, "num_targets": 1}],
                     "cache_dir": args.cache_dir, "data_root": args.data_root, "device": args.device},
                    [f"pretrain.epochs={args.epochs}", f"pretrain.augmentation={augmentation}",
                     f"pretrain.precision={args.precision}"]
                    + ([f"pretrain_data.num_images={args.num_images}"] if args.num_images else [])
                    + ([f"downstream.epochs={args.downstream_epochs}"] if args.downstream_epochs else []))
    lines: list[str] = []
    exp = Experiment(cfg, Path(args.out) / f"{augmentation}_seed{seed}", log=lambda s: (lines.append(s), log(s)))
    exp.data.clean_pretrain_images()  # decode before the clock starts
    enc_dir = clean_encoder_dir(cfg)
    cached = (enc_dir / "encoder.pt").exists()
    t0 = time.time()
    path = exp.pretrain("clean")["clean"]
    seconds = pretrain_seconds(enc_dir) if cached else time.time() - t0
    p, d = cfg["pretrain"], cfg["downstream"]
    ds = exp.data.dataset(args.dataset)
    tr_idx = train_subset(ds, d["num_train"], seed, 0)  # the downstream training subset, as the pipeline draws it
    enc = load_backbone(path, p)
    ftr = extract_features(enc, ds.train.images[tr_idx], p["image_size"])
    fte = extract_features(enc, ds.test.images, p["image_size"])
    clf = train_classifier(ftr, ds.train.labels[tr_idx], ds.num_classes, d["classifier"], d["epochs"], d["lr"],
                           d["batch_size"], seed)
    correct = int((predict(clf, fte) == np.asarray(ds.test.labels)).sum())
    ca = stats.rate(correct, len(fte))
    r = {"seed": seed, "augmentation": augmentation, "CA": ca, "pretrain_seconds": round(seconds, 1),
         "seconds_per_epoch": round(seconds / max(1, p["epochs"]), 2), "encoder": str(path), "cached": cached,
         # the logged epochs' times: on a shared machine the fastest is the least disturbed
         "logged_epoch_seconds": epoch_seconds(lines)}
    if r["logged_epoch_seconds"]:
        r["median_epoch_seconds"] = statistics.median(r["logged_epoch_seconds"])
        r["min_epoch_seconds"] = min(r["logged_epoch_seconds"])
    log(f"seed {seed} {augmentation}: CA {stats.fmt_rate(ca)}, {r['seconds_per_epoch']} s/epoch")
    return r


def summarize(runs: list[dict], seeds: list[int]) -> dict:
    from poisonedencoder.core import stats
    by = {(r["augmentation"], r["seed"]): r for r in runs}
    out = {}
    for aug in ("batched", "per_sample"):
        out[aug] = {"CA": stats.mean_ci([by[aug, s]["CA"]["value"] for s in seeds]),
                    "seconds_per_epoch": stats.mean_ci([by[aug, s]["seconds_per_epoch"] for s in seeds])}
    out["per_sample_minus_batched"] = {
        "CA": stats.paired_difference([by["batched", s]["CA"]["value"] for s in seeds],
                                      [by["per_sample", s]["CA"]["value"] for s in seeds]),
        "seconds_per_epoch_ratio": stats.mean_ci([by["per_sample", s]["seconds_per_epoch"]
                                                  / by["batched", s]["seconds_per_epoch"] for s in seeds])}
    return out


def table(runs: list[dict], summary: dict, seeds: list[int]) -> str:
    from poisonedencoder.core import stats
    by = {(r["augmentation"], r["seed"]): r for r in runs}
    lines = ["| seed | batched CA [95% Wilson] | per_sample CA [95% Wilson] | per_sample - batched | "
             "batched s/epoch | per_sample s/epoch |", "|---|---|---|---|---|---|"]
    for s in seeds:
        a, b = by["batched", s], by["per_sample", s]
        lines.append(f"| {s} | {stats.fmt_rate(a['CA'])} | {stats.fmt_rate(b['CA'])} | "
                     f"{b['CA']['value'] - a['CA']['value']:+.4f} | {a['seconds_per_epoch']:.2f} | {b['seconds_per_epoch']:.2f} |")
    d = summary["per_sample_minus_batched"]
    lines.append(f"| mean ± 95% t | {stats.fmt_mean(summary['batched']['CA'], 4)} | "
                 f"{stats.fmt_mean(summary['per_sample']['CA'], 4)} | {stats.fmt_mean(d['CA'], 4)} | "
                 f"{stats.fmt_mean(summary['batched']['seconds_per_epoch'], 2)} | "
                 f"{stats.fmt_mean(summary['per_sample']['seconds_per_epoch'], 2)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar10-folder", help="a dataset name (docs/CONFIG.md, Datasets)")
    ap.add_argument("--data-root", default=None,
                    help="where the datasets are (default: $POISONEDENCODER_DATA, else ~/.cache/poisonedencoder/data)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=30, help="pre-training epochs (the cpu preset has 100)")
    ap.add_argument("--precision", default="fp32", choices=("auto", "bf16", "fp32"))
    ap.add_argument("--num-images", type=int, default=None, help="clean pre-training inputs (preset: 5000)")
    ap.add_argument("--downstream-epochs", type=int, default=None, help="classifier epochs (preset: 100)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default="runs/augmentation_equality")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    import torch

    from poisonedencoder.core.errors import UserError

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        runs = []
        for i, s in enumerate(seeds):
            order = ("batched", "per_sample") if i % 2 == 0 else ("per_sample", "batched")
            runs += [run_one(args, s, aug, log) for aug in order]
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = summarize(runs, seeds)
    result = {"runs": runs, "summary": summary, "epochs": args.epochs, "precision": args.precision,
              "processor": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "dataset": args.dataset}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "equality.json").write_text(json.dumps(result, indent=1) + "\n")
    md = table(runs, summary, seeds)
    (Path(args.out) / "equality.md").write_text(md + "\n")
    print(md)
    print(f"processor: {result['processor']}, {result['threads']} threads, torch {result['torch']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
