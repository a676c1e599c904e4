"""Pre-training throughput, measured side by side in one run on one machine.

(a) this toolkit's loop: uint8 tensors in memory, both views by batched augmentation
    (per-image random parameters), channels_last, forward + backward + optimizer step;
(b) the per-sample pipeline found in most SSL repositories: PIL images, a torchvision
    ``transforms.Compose`` applied image by image twice, a ``DataLoader``, then the same step;
(c) the same step on ready-made batches: the model's ceiling.

Prints images/s for each (an image = one pre-training input, i.e. two views) and the ratios
a/b and a/c. Example:

    python benchmarks/pretrain_throughput.py --backbone cnn7 --width 16
    python benchmarks/pretrain_throughput.py --backbone resnet18 --steps 2 --rounds 2
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import time

import numpy as np
import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _interleaved(fns: dict, steps: int, warmup: int, rounds: int, device: str = "cpu") -> dict:
    """Seconds per step of each function, timed in alternating rounds so drift hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    total = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for k, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            total[k] += time.perf_counter() - t0
    return {k: v / (steps * rounds) for k, v in total.items()}


def _cycle(loader):
    while True:
        yield from loader


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="cnn7", choices=("cnn7", "resnet18"))
    ap.add_argument("--width", type=int, default=16, help="cnn7 width")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per method and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (a, b, c, a, b, c, ...)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for (b)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]; on a GPU (a) keeps the data and augments there")
    ap.add_argument("--bf16", action="store_true", help="also time (a) and (c) under bf16 autocast (on CPU: needs bf16 support)")
    ap.add_argument("--compile", action="store_true", help="also time (c) with torch.compile (compile time excluded)")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import torchvision.transforms as T
    from PIL import Image

    from poisonedencoder.config import resolve
    from poisonedencoder.ssl.augment import AugmentParams, augment
    from poisonedencoder.ssl.pretrain_set import PretrainSet
    from poisonedencoder.ssl.step import train_step as _step
    from poisonedencoder.ssl.methods import SimCLR

    p = resolve({"preset": "cpu"}, [f"pretrain.backbone={args.backbone}", f"pretrain.width={args.width}"])["pretrain"]
    bs = args.batch_size
    n = bs * 8
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # content does not change the cost
    torch.manual_seed(0)
    dev = args.device
    model = SimCLR.from_config(p).to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    aug = AugmentParams.from_config(p)

    # (a) this loop
    data = PretrainSet.from_images(images).to(dev)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(n, generator=g)
    counter = itertools.count()

    def step_a(bf16=False):
        i = next(counter) % (n // bs)
        x1, x2 = data.views(perm[i * bs:(i + 1) * bs], aug, g)
        _step(model, opt, x1, x2, dev, bf16)

    # (b) per-sample PIL + torchvision transforms + DataLoader
    tf = T.Compose([T.RandomResizedCrop(32, scale=tuple(p["crop_scale"])), T.RandomHorizontalFlip(p["flip_p"]),
                    T.RandomApply([T.ColorJitter(*p["jitter"])], p=p["jitter_p"]), T.RandomGrayscale(p["gray_p"]),
                    T.ToTensor()])  # the backbone normalizes its input itself, as in (a) and (c)

    class Pairs(torch.utils.data.Dataset):
        def __init__(self, imgs):
            self.imgs = [Image.fromarray(x) for x in imgs]

        def __len__(self):
            return len(self.imgs)

        def __getitem__(self, i):
            return tf(self.imgs[i]), tf(self.imgs[i])

    loader = torch.utils.data.DataLoader(Pairs(images), batch_size=bs, shuffle=True, num_workers=args.workers,
                                         drop_last=True, pin_memory=dev.startswith("cuda"),
                                         persistent_workers=args.workers > 0)
    batches = _cycle(loader)

    def step_b():
        x1, x2 = next(batches)
        _step(model, opt, x1, x2, dev)

    # (c) the model alone on ready-made batches
    x1 = augment(torch.from_numpy(images[:bs]).permute(0, 3, 1, 2), aug, g).to(dev)
    x2 = augment(torch.from_numpy(images[:bs]).permute(0, 3, 1, 2), aug, g).to(dev)

    def step_c():
        _step(model, opt, x1, x2, dev)

    fns = {"a_this_loop": step_a, "b_per_sample_pipeline": step_b, "c_model_only": step_c}
    if args.bf16:
        fns["a_this_loop_bf16"] = lambda: step_a(bf16=True)
        fns["c_model_only_bf16"] = lambda: _step(model, opt, x1, x2, dev, bf16=True)
    if args.compile:
        from poisonedencoder.ssl.step import _ContrastiveStep

        twin = copy.deepcopy(model)
        compiled = torch.compile(_ContrastiveStep(twin))  # the loss as a compiled module, as pretrain.compile does
        copt = torch.optim.Adam(twin.parameters(), lr=1e-3)
        fns["c_model_only_compiled"] = lambda: _step(compiled, copt, x1, x2, dev)
        if args.bf16:
            fns["c_model_only_bf16_compiled"] = lambda: _step(compiled, copt, x1, x2, dev, bf16=True)
    sec = _interleaved(fns, args.steps, args.warmup, args.rounds, dev)
    ips = {k: bs / v for k, v in sec.items()}
    out = {"device": torch.cuda.get_device_name(dev) if dev.startswith("cuda") else "cpu", "backbone": args.backbone, "width": args.width if args.backbone == "cnn7" else None, "batch_size": bs,
           "steps": args.steps, "rounds": args.rounds, "threads": torch.get_num_threads(), "workers_b": args.workers,
           "images_per_s": {k: round(v, 1) for k, v in ips.items()},
           "a_over_b": round(ips["a_this_loop"] / ips["b_per_sample_pipeline"], 3),
           "a_over_c": round(ips["a_this_loop"] / ips["c_model_only"], 3)}
    for k in ("c_model_only_bf16", "c_model_only_compiled", "c_model_only_bf16_compiled"):
        if k in ips:
            out[f"{k}_over_c"] = round(ips[k] / ips["c_model_only"], 3)
    if "a_this_loop_bf16" in ips:
        out["a_bf16_over_c_bf16"] = round(ips["a_this_loop_bf16"] / ips["c_model_only_bf16"], 3)
    for k, v in out["images_per_s"].items():
        print(f"{k:24s} {v:9.1f} images/s (two views each)")
    print(f"a/b = {out['a_over_b']:.2f}   a/c = {out['a_over_c']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
