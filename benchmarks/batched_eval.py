"""The downstream classifiers of one task trained one after another against together, side by side.

``--models`` classifiers (default 5: clean, poisoned and three snapshots) on feature sets of one
shape, trained by ``downstream.train_classifier`` one after another ("sequential", what
``evaluate_task(batched=False)`` does) and by ``downstream.train_classifiers`` in one call
("batched", the default), in alternating rounds so that a change of the machine's speed hits
both alike. The features are random (the cost does not depend on their values); the defaults
are the demo preset's digits task (1,347 training inputs, CNN7 width 16: 128-d, 10 classes, MLP,
150 epochs of batch 256). Also reports how far the two paths' logits on held-out features lie
apart. Examples:

    python benchmarks/batched_eval.py
    python benchmarks/batched_eval.py --device cuda --num-train 25000 --dim 512 --epochs 100
"""
from __future__ import annotations

import argparse
import sys
import time

from poisonedencoder.ssl.precision import cpu_name


def measure(num_models: int, n: int, dim: int, classes: int, kind: str, epochs: int, batch_size: int, rounds: int,
            device: str) -> dict:
    import torch

    from poisonedencoder.downstream import logits, train_classifier, train_classifiers

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, classes, (n,), generator=g).numpy()
    feats = [(torch.randn(n, dim, generator=g) + m).to(device) for m in range(num_models)]
    held_out = torch.randn(1000, dim, generator=g).to(device)
    settings = {"kind": kind, "lr": 1e-3, "batch_size": batch_size, "seed": 0}

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def sequential(e: int) -> list:
        return [train_classifier(f, labels, classes, epochs=e, **settings) for f in feats]

    def batched(e: int) -> list:
        return train_classifiers(feats, labels, classes, epochs=e, **settings)

    runs = {"sequential": sequential, "batched": batched}
    for fn in runs.values():  # warm-up: one epoch each
        fn(1)
    sync()
    seconds = {k: 0.0 for k in runs}
    out = {}
    for r in range(rounds):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t0 = time.perf_counter()
            out[name] = runs[name](epochs)
            sync()
            seconds[name] += time.perf_counter() - t0
    diffs = [(logits(a, held_out) - logits(b, held_out)).abs().max().item()
             for a, b in zip(out["sequential"], out["batched"], strict=True)]
    agree = [float((logits(a, held_out).argmax(1) == logits(b, held_out).argmax(1)).float().mean())
             for a, b in zip(out["sequential"], out["batched"], strict=True)]
    steps = epochs * -(-n // batch_size)
    return {"models": num_models, "num_train": n, "dim": dim, "classes": classes, "kind": kind, "epochs": epochs,
            "batch_size": batch_size, "steps_per_model": steps, "rounds": rounds, "device": device,
            "seconds_sequential": seconds["sequential"] / rounds, "seconds_batched": seconds["batched"] / rounds,
            "sequential_over_batched": seconds["sequential"] / seconds["batched"],
            "max_abs_logit_difference": max(diffs), "prediction_agreement": min(agree)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=5, help="classifiers per task (encoders and snapshots)")
    ap.add_argument("--num-train", type=int, default=1347)
    ap.add_argument("--dim", type=int, default=128, help="feature width")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--kind", choices=("mlp", "linear"), default="mlp")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--json", help="also write the result to this JSON file")
    args = ap.parse_args(argv)
    if min(args.models, args.num_train, args.dim, args.epochs, args.rounds) < 1:
        print("error: --models, --num-train, --dim, --epochs and --rounds must be at least 1", file=sys.stderr)
        return 2
    import torch

    where = cpu_name()
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("error: --device cuda: no CUDA GPU", file=sys.stderr)
            return 2
        where += f"; {torch.cuda.get_device_name(torch.device(args.device))}"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {where}", flush=True)
    r = measure(args.models, args.num_train, args.dim, args.classes, args.kind, args.epochs, args.batch_size,
                args.rounds, args.device)
    r.update(torch=torch.__version__, threads=torch.get_num_threads(), machine=where)
    print(f"{r['models']} {r['kind']} classifiers, {r['num_train']} x {r['dim']} features, {r['steps_per_model']} steps each, "
          f"{r['device']}: sequential {r['seconds_sequential']:.2f} s, batched {r['seconds_batched']:.2f} s, "
          f"x{r['sequential_over_batched']:.2f} (mean of {r['rounds']} alternating rounds); held-out logits differ by "
          f"at most {r['max_abs_logit_difference']:.2g}, predictions agree on {r['prediction_agreement']:.1%}")
    if args.json:
        from poisonedencoder.core.io import write_json

        write_json(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
