"""The pre-training step under variants of its settings, side by side: images/s and MFU.

Each variant is the loop's step (both views cut and colored by the batched augmentation from
uint8 images on the device, forward, backward, Adam) with its own ``pretrain.compile``,
``memory_format``, ``precision`` and ``batch_size``, resolved on the device as the loop resolves
them. The variants are timed in alternating rounds in one process; with ``--procs 1,4`` the
same is measured again in 4 processes that share the device and start their timed rounds
together, and the images/s of the processes are added. The first steps of each variant (compile
included) are timed apart and reported as ``first_steps_s``.

MFU = images/s x FLOPs per image / peak FLOP/s. FLOPs per image: ``poisonedencoder.ssl.flops``
(FlopCounterMode on one forward and backward of the method). The peak: ``--peak-tflops``, else
the dense bf16 peak of the GPU by name (``flops.PEAK_TFLOPS``); on a CPU without
``--peak-tflops`` MFU is not reported.

    python benchmarks/step_settings.py --device cuda --backbone resnet18 --batch-size 512 --procs 1,4
    python benchmarks/step_settings.py --backbone cnn7 --width 16 --steps 5 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# the loop before pretrain.compile / memory_format existed (compile off, channels_last), then the defaults
DEFAULT_VARIANTS = ("before=compile:false,memory_format:channels_last", "default=compile:auto,memory_format:auto",
                    "contiguous=compile:auto,memory_format:contiguous")
_KEYS = {"compile": ("auto", "true", "false"), "memory_format": ("auto", "channels_last", "contiguous"),
         "precision": ("auto", "bf16", "fp32"), "batch_size": None,
         "compile_mode": ("default", "reduce-overhead", "max-autotune")}  # torch.compile's mode; reduce-overhead: CUDA graphs


class BadInput(Exception):
    pass


def parse_variant(text: str, batch_size: int) -> tuple[str, dict]:
    """``NAME=key:value,key:value`` as (NAME, settings); keys: compile, memory_format, precision, batch_size,
    compile_mode (a compiled step's ``torch.compile`` mode, which the loop does not set: what it would gain)."""
    name, eq, spec = text.partition("=")
    if not eq or not name:
        raise BadInput(f"--variant {text!r}: write NAME=key:value,... (keys: {', '.join(_KEYS)})")
    out = {"compile": "auto", "memory_format": "auto", "precision": "auto", "batch_size": batch_size, "compile_mode": "default"}
    for part in filter(None, spec.split(",")):
        key, colon, value = part.partition(":")
        if key not in _KEYS or not colon:
            raise BadInput(f"--variant {name}: unknown setting {part!r}; keys: {', '.join(_KEYS)}")
        if _KEYS[key] is None:
            if not value.isdigit() or int(value) < 2:
                raise BadInput(f"--variant {name}: batch_size must be an integer >= 2, got {value!r}")
            out[key] = int(value)
        elif value not in _KEYS[key]:
            raise BadInput(f"--variant {name}: {key} must be one of {', '.join(_KEYS[key])}, got {value!r}")
        else:
            out[key] = {"true": True, "false": False}.get(value, value) if key == "compile" else value
    return name, out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _build(p: dict, v: dict, device: str):
    """One variant's step function and what its settings resolved to."""
    from poisonedencoder.ssl.augment import AugmentParams
    from poisonedencoder.ssl.methods import build_method
    from poisonedencoder.ssl.precision import resolve_precision
    from poisonedencoder.ssl.pretrain_set import PretrainSet
    from poisonedencoder.ssl.speedups import resolve_compile, resolve_memory_format, torch_format
    from poisonedencoder.ssl.step import _ContrastiveStep, train_step

    resolved = {"compile": resolve_compile(v["compile"], device), "memory_format": resolve_memory_format(v["memory_format"]),
                "precision": resolve_precision(v["precision"], device), "batch_size": v["batch_size"]}
    if resolved["compile"]:
        resolved["compile_mode"] = v["compile_mode"]
    fmt, bs = torch_format(resolved["memory_format"]), v["batch_size"]
    torch.manual_seed(0)
    model = build_method(p).to(device).to(memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=p["lr"])
    step_model = torch.compile(_ContrastiveStep(model), mode=v["compile_mode"]) if resolved["compile"] else model
    n = bs * 4
    images = np.random.default_rng(0).integers(0, 256, (n, p["image_size"], p["image_size"], 3), dtype=np.uint8)
    data, aug = PretrainSet.from_images(images).to(device), AugmentParams.from_config(p)
    g = torch.Generator().manual_seed(0)
    perm, i = torch.randperm(n, generator=g), [0]
    bf16 = resolved["precision"] == "bf16"

    def step():
        k = i[0] % 4
        i[0] += 1
        x1, x2 = data.views(perm[k * bs:(k + 1) * bs], aug, g)
        train_step(step_model, opt, x1, x2, device, bf16, memory_format=fmt)

    return step, resolved


def measure(args, variants: dict, sync_dir: str | None = None) -> dict:
    """Seconds per step of each variant in this process (alternating rounds)."""
    from poisonedencoder.config import resolve

    preset = "paper" if args.backbone.startswith("resnet") else "cpu"
    p = resolve({"preset": preset}, [f"pretrain.backbone={args.backbone}", f"pretrain.width={args.width}",
                                     f"pretrain.image_size={args.image_size}"])["pretrain"]
    steps, resolved, first = {}, {}, {}
    for name, v in variants.items():
        steps[name], resolved[name] = _build(p, v, args.device)
        _sync(args.device)
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            steps[name]()
        _sync(args.device)
        first[name] = time.perf_counter() - t0
    if sync_dir:  # start the timed rounds together with the other processes
        Path(sync_dir, f"ready.{os.getpid()}").touch()
        deadline = time.time() + 1800
        while len(list(Path(sync_dir).glob("ready.*"))) < args.procs_now and time.time() < deadline:
            time.sleep(0.05)
    total = dict.fromkeys(variants, 0.0)
    for _ in range(args.rounds):
        for name, fn in steps.items():
            _sync(args.device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            _sync(args.device)
            total[name] += time.perf_counter() - t0
    ips = {k: variants[k]["batch_size"] * args.steps * args.rounds / total[k] for k in variants}
    return {"images_per_s": ips, "resolved": resolved, "first_steps_s": first}


def _in_processes(args, argv: list[str], n: int) -> list[dict]:
    """``measure`` in ``n`` processes at once on the same device; each one's result."""
    with tempfile.TemporaryDirectory() as tmp:
        threads = args.threads or max(1, torch.get_num_threads() // n)
        import poisonedencoder  # the children import the same package as this process

        src = str(Path(poisonedencoder.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (src, os.environ.get("PYTHONPATH"))))}
        procs = []
        for k in range(n):
            cmd = [sys.executable, __file__, *argv, "--procs", "1", "--threads", str(threads),
                   "--json", f"{tmp}/{k}.json", "--child-sync", tmp, "--child-of", str(n)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env))
        if any(pr.wait() for pr in procs):
            raise RuntimeError(f"a process of --procs {n} failed")
        return [json.loads(Path(f"{tmp}/{k}.json").read_text())["child"] for k in range(n)]


def _without(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` and ``option=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def _summary(results: list[dict], variants: dict, flops: float, peak: float | None) -> dict:
    first = next(iter(variants))
    ips = {k: sum(r["images_per_s"][k] for r in results) for k in variants}
    out = {"processes": len(results), "images_per_s": {k: round(v, 1) for k, v in ips.items()},
           "per_process_images_per_s": {k: [round(r["images_per_s"][k], 1) for r in results] for k in variants},
           f"over_{first}": {k: round(v / ips[first], 3) for k, v in ips.items()},
           "tflops_per_s": {k: round(v * flops / 1e12, 3) for k, v in ips.items()},
           "first_steps_s": {k: [round(r["first_steps_s"][k], 2) for r in results] for k in variants}}
    out["mfu"] = {k: round(v * flops / (peak * 1e12), 4) for k, v in ips.items()} if peak else None
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="cnn7")
    ap.add_argument("--width", type=int, default=16, help="cnn7 / resnet18w width")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=256, help="every variant's, unless it sets batch_size")
    ap.add_argument("--variant", action="append", help="NAME=key:value,... (compile, memory_format, precision, "
                    "batch_size, compile_mode); repeatable; default: before, default, contiguous")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3, help="first steps per variant, timed apart (compile included)")
    ap.add_argument("--procs", default="1", help="comma-separated process counts sharing the device, e.g. 1,4")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: split among them)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, TFLOP/s (default: by GPU name)")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    ap.add_argument("--child-sync", help=argparse.SUPPRESS)
    ap.add_argument("--child-of", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        variants = dict(parse_variant(t, args.batch_size) for t in (args.variant or DEFAULT_VARIANTS))
        counts = [int(c) for c in args.procs.split(",")]
        if not counts or min(counts) < 1 or min(args.steps, args.rounds) < 1 or args.warmup < 0:
            raise ValueError
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"error: --procs must be positive integers (got {args.procs!r}), --steps and --rounds >= 1", file=sys.stderr)
        return 2
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        print(f"error: --peak-tflops must be positive, got {args.peak_tflops}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    args.procs_now = args.child_of
    if args.child_sync:  # one of several processes: measure, write, done
        Path(args.json).write_text(json.dumps({"child": measure(args, variants, args.child_sync)}))
        return 0

    from poisonedencoder.config import resolve
    from poisonedencoder.ssl.flops import peak_tflops, step_flops_per_image
    from poisonedencoder.ssl.precision import cpu_name

    cuda = args.device.startswith("cuda")
    name = torch.cuda.get_device_name(args.device) if cuda else cpu_name()
    peak = args.peak_tflops or (peak_tflops(name) if cuda else None)
    p = resolve({}, [f"pretrain.backbone={args.backbone}", f"pretrain.width={args.width}",
                     f"pretrain.image_size={args.image_size}"])["pretrain"]
    flops = step_flops_per_image(p)
    out = {"device": name, "torch": torch.__version__, "backbone": args.backbone, "image_size": args.image_size,
           "threads": torch.get_num_threads(), "steps": args.steps, "rounds": args.rounds,
           "flops_per_image": flops, "peak_tflops": peak, "variants": variants, "runs": {}}
    child_argv = _without(argv, "--procs")
    for n in counts:
        results = [measure(args, variants)] if n == 1 else _in_processes(args, child_argv, n)
        out["resolved"] = results[0]["resolved"]
        out["runs"][str(n)] = _summary(results, variants, flops, peak)
    print(f"{name}, {args.backbone} {args.image_size}x{args.image_size}, {flops / 1e9:.4g} GFLOP per image (2 views, "
          f"forward + backward), peak {f'{peak} TFLOP/s' if peak else 'not given'}")
    for k, r in out["resolved"].items():
        print(f"  {k}: {r}")
    first = next(iter(variants))
    for n, s in out["runs"].items():
        for k in variants:
            mfu = f"  MFU {s['mfu'][k]:.1%}" if s["mfu"] else ""
            print(f"{n} proc  {k:16s} {s['images_per_s'][k]:10.1f} images/s  x{s[f'over_{first}'][k]:.3f}"
                  f"  {s['tflops_per_s'][k]:8.3f} TFLOP/s{mfu}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
