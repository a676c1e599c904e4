"""Audit a pre-training pipeline with the Python API (no CLI), on scikit-learn's digits.

1. crafts the poisoning inputs of the demo configuration and exports the pre-training set (clean
   inputs + poisoning inputs) as an image folder, the input of your own trainer;
2. takes a poisoned and a clean encoder: files trained elsewhere (``--encoder``, ``--clean-encoder``,
   with ``--arch`` for a state_dict), or, by default, the toolkit's own SimCLR standing in for
   your trainer;
3. measures them on the run's target inputs: CA, PA, ASR, clean ASR, the target inputs' margins.

    python examples/audit_api.py             # 75 s on an idle 2-core Xeon: ASR 3/3, clean ASR 0/3
    python examples/audit_api.py --epochs 1 --num-images 300      # a smoke test, seconds
    python examples/audit_api.py --out runs/audit --export-imagefolder exported/ \\
        --encoder poisoned.pt --clean-encoder clean.pt --arch resnet18   # your encoders (docs/AUDIT.md)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import poisonedencoder as pe

ROOT = Path(__file__).resolve().parents[1]


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/audit_api", help="run directory (craft, encoders, metrics.json)")
    ap.add_argument("--cache-dir", help="cache for datasets and clean encoders (default ~/.cache/poisonedencoder)")
    ap.add_argument("--export-imagefolder", help="also write the pre-training set here (a new or empty folder)")
    ap.add_argument("--epochs", type=int, default=100, help="pre-training epochs of the toolkit's encoders")
    ap.add_argument("--num-images", type=int, help="clean pre-training inputs (default: all 1,347)")
    ap.add_argument("--width", type=int, default=16, help="CNN7 width of the toolkit's encoders")
    ap.add_argument("--downstream-epochs", type=int, default=150)
    ap.add_argument("--encoder", help="a poisoned encoder trained elsewhere (a state_dict, or TorchScript with "
                                      "--trust-torchscript)")
    ap.add_argument("--clean-encoder", help="its clean counterpart (optional)")
    ap.add_argument("--arch", help="architecture of a state_dict (resnet18, resnet50, cnn7, resnet18-cifar, resnet18w, timm:NAME)")
    ap.add_argument("--trust-torchscript", action="store_true",
                    help="load a TorchScript --encoder: its code runs when it is loaded and called")
    return ap.parse_args(argv)


def config(args: argparse.Namespace) -> dict:
    """The demo configuration, one seed, with the example's settings."""
    over = ["seeds=null", f"pretrain.epochs={args.epochs}", f"pretrain.width={args.width}",
            f"downstream.epochs={args.downstream_epochs}"]
    if args.num_images:
        over += [f"pretrain_data.num_images={args.num_images}", "attack.num_references=5"]
    if args.cache_dir:
        over.append(f"cache_dir={args.cache_dir}")
    return pe.load_config(ROOT / "configs" / "digits_demo.yaml", over)


def main(argv=None) -> dict:
    args = parse(argv)
    cfg = config(args)
    p = cfg["pretrain"]
    manifest = pe.craft(cfg, args.out, export_imagefolder=args.export_imagefolder)
    print(f"{manifest['num_poisoning_inputs']} poisoning inputs for {len(manifest['targets'])} target inputs")
    if args.encoder:  # trained elsewhere
        load = {"arch": args.arch, "width": p["width"], "image_size": p["image_size"],
                "trust_torchscript": args.trust_torchscript}
        encoder, info = pe.load_encoder(args.encoder, **load)
        clean = pe.load_encoder(args.clean_encoder, **load)[0] if args.clean_encoder else None
        print(f"encoder {info['path']} ({info['format']}, sha256 {info['sha256'][:12]}..., normalize {info['normalize']})")
    else:  # the toolkit's own trainer stands in for yours; its encoder.pt is a state_dict under "backbone"
        paths = pe.pretrain(cfg, args.out)
        encoder = pe.load_encoder(paths["poisoned"], arch="cnn7", width=p["width"], image_size=p["image_size"])[0]
        clean = pe.load_encoder(paths["clean"], arch="cnn7", width=p["width"], image_size=p["image_size"])[0]
    m = pe.evaluate_encoder(encoder, cfg, clean_encoder=clean, out=args.out, log=lambda _: None)
    iv, mg = m["intervals"], m["margins"]

    def rate(key):
        r = iv[key]
        return "not measured" if r is None else f"{r['value']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] ({r['k']}/{r['n']})"

    for key in ("CA", "PA", "ASR", "clean_ASR"):
        print(f"{key:9s} {rate(key)}")
    for enc in ("clean", "poisoned"):
        mean = mg[enc]["margin"]["mean"]
        print(f"mean margin, {enc} encoder: {'not measured' if mean is None else f'{mean:.2f}'}")
    print(f"metrics: {Path(args.out) / 'metrics.json'}")
    return m


if __name__ == "__main__":
    main()
