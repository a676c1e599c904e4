"""What each backbone costs per pre-training input on this machine, measured side by side.

One SimCLR-shaped training step (both views of a batch through the backbone and a linear head,
backward, Adam step; bf16 autocast when --precision bf16) for each ``BACKBONE:WIDTH:SIZE`` spec,
on random inputs: the encoder compute a study spends, as inputs per second and as a ratio to the
first spec. Data loading and augmentation are left out (benchmarks/pretrain_throughput.py
measures those). Example (docs/RESULTS.md, "Why the attack stops short at CPU scale"):

    python benchmarks/backbone_cost.py cnn7:16:32 cnn7:32:32 cnn7:64:32 cnn7:64:16 resnet18:64:32 resnet18:64:16

WIDTH is the base width of cnn7 and resnet18w (ignored for resnet18); SIZE the side of the square view.
"""
from __future__ import annotations

import argparse
import sys
import time


def measure(name: str, width: int, size: int, batch: int, steps: int, precision: str) -> dict:
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

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    return {"backbone": name, "width": width, "size": size, "params": sum(p.numel() for p in model.parameters()),
            "batch_size": batch, "timed_steps": seen["steps"] - 2, "compute_dtype": seen["dtype"],
            "seconds_per_step": dt, "inputs_per_second": batch / dt}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+", metavar="BACKBONE:WIDTH:SIZE")
    ap.add_argument("--batch-size", type=int, default=256, help="pre-training inputs per step (two views each)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    from poisonedencoder.errors import UserError

    rows = []
    for spec in args.specs:
        try:
            name, width, size = spec.split(":")
            rows.append(measure(name, int(width), int(size), args.batch_size, args.steps, args.precision))
        except (ValueError, UserError):
            print(f"error: {spec!r} must be BACKBONE:WIDTH:SIZE, e.g. cnn7:16:32", file=sys.stderr)
            return 2
        r = rows[-1]
        print(f"{spec:>16}: {r['params'] / 1e6:6.2f}M parameters, {r['inputs_per_second']:7.0f} inputs/s, "
              f"cost x{rows[0]['inputs_per_second'] / r['inputs_per_second']:.1f} of {args.specs[0]}", flush=True)
    if args.json:
        from poisonedencoder.io import write_json

        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
