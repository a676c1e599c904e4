"""What each backbone costs per pre-training input on this machine, measured side by side.

One SimCLR-shaped training step (both views of a batch through the backbone and a linear head,
backward, Adam step; bf16 autocast when --precision bf16) for each ``BACKBONE:WIDTH:SIZE`` spec,
on random inputs: the encoder compute a study spends, as inputs per second and as a ratio to the
first spec. The specs are timed in alternating rounds (``--rounds``), so that a change of the
machine's speed during the run hits them alike. Data loading and augmentation are left out (benchmarks/pretrain_throughput.py
measures those). Example (docs/RESULTS.md, "Why the attack stops short at CPU scale"):

    python benchmarks/backbone_cost.py cnn7:16:32 cnn7:32:32 cnn7:64:32 cnn7:64:16 resnet18:64:32 resnet18:64:16

WIDTH is the base width of cnn7 and resnet18w (ignored for resnet18); SIZE the side of the square view.
"""
from __future__ import annotations

import argparse
import sys
import time


def build(name: str, width: int, size: int, batch: int, precision: str) -> tuple:
    """One SimCLR-shaped training step of this backbone, and what it is."""
    import torch

    from poisonedencoder.ssl.models import build_backbone

    torch.manual_seed(0)
    model = build_backbone(name, width).to(memory_format=torch.channels_last)
    head = torch.nn.Linear(model.feature_dim, 128)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], 1e-3)
    x = torch.rand(2 * batch, 3, size, size).to(memory_format=torch.channels_last)  # two views per input
    seen = {"steps": 0}

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            z = head(model(x))
        seen["steps"], seen["dtype"] = seen["steps"] + 1, str(z.dtype).replace("torch.", "")
        loss = z.float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    info = {"backbone": name, "width": width, "size": size, "params": sum(p.numel() for p in model.parameters()),
            "batch_size": batch}
    return step, info, seen


def measure_all(specs: list[tuple[str, int, int]], batch: int, steps: int, precision: str, rounds: int = 2) -> list[dict]:
    """Every spec timed in alternating rounds (two warm-up steps each first), so that a drift of the
    machine's speed hits all specs alike; ``steps`` timed steps per spec and round."""
    built = [build(n, w, s, batch, precision) for n, w, s in specs]
    for step, _, _ in built:
        for _ in range(2):
            step()
    total = [0.0] * len(built)
    for _ in range(rounds):
        for i, (step, _, _) in enumerate(built):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            total[i] += time.perf_counter() - t0
    rows = []
    for (_, info, seen), t in zip(built, total, strict=True):
        dt = t / (steps * rounds)
        rows.append({**info, "timed_steps": seen["steps"] - 2, "rounds": rounds, "compute_dtype": seen["dtype"],
                     "seconds_per_step": dt, "inputs_per_second": batch / dt})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+", metavar="BACKBONE:WIDTH:SIZE")
    ap.add_argument("--batch-size", type=int, default=256, help="pre-training inputs per step (two views each)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds over all specs")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    from poisonedencoder.core.errors import UserError

    specs = []
    for spec in args.specs:
        try:
            name, width, size = spec.split(":")
            specs.append((name, int(width), int(size)))
            build(name, int(width), 8, 1, "fp32")  # a name or width the registry refuses: refused here
        except (ValueError, UserError):
            print(f"error: {spec!r} must be BACKBONE:WIDTH:SIZE, e.g. cnn7:16:32", file=sys.stderr)
            return 2
    if args.rounds < 1 or args.steps < 1:
        print("error: --rounds and --steps must be at least 1", file=sys.stderr)
        return 2
    rows = measure_all(specs, args.batch_size, args.steps, args.precision, args.rounds)
    for spec, r in zip(args.specs, rows, strict=True):
        print(f"{spec:>16}: {r['params'] / 1e6:6.2f}M parameters, {r['inputs_per_second']:7.0f} inputs/s, "
              f"cost x{rows[0]['inputs_per_second'] / r['inputs_per_second']:.1f} of {args.specs[0]}", flush=True)
    if args.json:
        from poisonedencoder.core.io import write_json

        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
