"""How fast crop_disagreement scores a folder: CIFAR-10's 50,000 training images with a given
encoder, batched (what ``poisonedencoder scan`` and the defense do) against one image at a time.

Reports images per second for the whole set, batched, and the share of that time spent in the
encoder (the rest is cropping with ``roi_align``, stacking and the cosine statistic). Then, on
the first ``--subset`` images, the batched and the one-image-at-a-time scoring side by side in
alternating rounds (so a change of the machine's speed hits both alike), with their ratio. The
encoder's weights do not change the cost: a freshly
initialised backbone of the toolkit stands for a trained one. One image at a time draws other
crops than the batch (each call starts the crops' random stream anew), so the two are compared by
time and by the correlation of their scores. Examples:

    python benchmarks/scan_speed.py --data-root DATA                       # CIFAR-10 under DATA/cifar10
    python benchmarks/scan_speed.py --dataset digits --backbone cnn7 --width 16
"""
from __future__ import annotations

import argparse
import sys
import time


class _Timed:
    """Wraps an encoder and sums the wall time of its forward calls."""

    def __init__(self, module):
        self.module, self.seconds = module, 0.0

    def __call__(self, x):
        t0 = time.perf_counter()
        y = self.module(x)
        self.seconds += time.perf_counter() - t0
        return y

    def __getattr__(self, name):  # parameters(), eval(), train(), training: the module's
        return getattr(self.module, name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar10-folder", help="a dataset name of the toolkit (default: cifar10-folder)")
    ap.add_argument("--data-root", help="the data root (default: POISONEDENCODER_DATA or the toolkit's default)")
    ap.add_argument("--size", type=int, default=32, help="image size (default 32)")
    ap.add_argument("--backbone", default="cnn7", help="encoder backbone (default cnn7)")
    ap.add_argument("--width", type=int, default=16, help="backbone width (default 16)")
    ap.add_argument("--crops", type=int, default=8, help="crops per image (the defense's default 8)")
    ap.add_argument("--limit", type=int, help="score only the first N training images")
    ap.add_argument("--subset", type=int, default=256, help="images for the side-by-side comparison (default 256)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of the comparison (default 2)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.subset < 2 or args.rounds < 1 or (args.limit is not None and args.limit < 1):
        print("error: --subset must be at least 2, --rounds and --limit at least 1", file=sys.stderr)
        return 2

    import numpy as np
    import torch

    from poisonedencoder.data.datasets import load_dataset
    from poisonedencoder.defenses.crop_disagreement import CropDisagreement
    from poisonedencoder.core.errors import UserError
    from poisonedencoder.ssl.models import build_backbone
    from poisonedencoder.ssl.precision import cpu_name

    try:
        ds = load_dataset(args.dataset, args.size, args.data_root)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    images = ds.train.images[: args.limit] if args.limit else ds.train.images
    torch.manual_seed(0)
    enc = _Timed(build_backbone(args.backbone, args.width).eval())
    f = CropDisagreement(crops=args.crops)
    print(f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; {args.dataset} "
          f"{len(images)} images at {args.size}px, {args.backbone}/{args.width}, {args.crops} crops each")

    f.scores(images[:64], enc)  # warm-up
    enc.seconds = 0.0
    t0 = time.perf_counter()
    scores = f.scores(images, enc)
    total, enc_seconds = time.perf_counter() - t0, enc.seconds
    print(f"batched, all {len(images)}: {total:.1f} s, {len(images) / total:.0f} images/s; encoder "
          f"{enc.seconds:.1f} s ({100 * enc.seconds / total:.0f}%), cropping and the rest {total - enc.seconds:.1f} s "
          f"({100 * (total - enc.seconds) / total:.0f}%)")

    sub = images[: args.subset]
    seconds = {"batched": 0.0, "one at a time": 0.0}
    for r in range(args.rounds):
        for name in (list(seconds) if r % 2 == 0 else list(seconds)[::-1]):
            t0 = time.perf_counter()
            if name == "batched":
                got_b = f.scores(sub, enc)
            else:
                got_o = np.concatenate([f.scores(sub[i:i + 1], enc) for i in range(len(sub))])
            seconds[name] += time.perf_counter() - t0
    per = {k: args.rounds * len(sub) / v for k, v in seconds.items()}
    r = float(np.corrcoef(got_b, got_o)[0, 1])
    print(f"side by side on {len(sub)} images x {args.rounds} rounds: batched {per['batched']:.0f} images/s, one at a "
          f"time {per['one at a time']:.0f} images/s: batched {per['batched'] / per['one at a time']:.1f}x "
          f"(each call draws its crops from the same seed, so the two score other crops; correlation {r:.2f})")
    print(f"score of the whole set: median {np.median(scores):.4f}, 99th percentile {np.quantile(scores, 0.99):.4f}")
    if args.json:
        from poisonedencoder.core.io import write_json

        write_json(args.json, {"machine": cpu_name(), "threads": torch.get_num_threads(), "dataset": args.dataset,
                               "images": len(images), "seconds": total, "images_per_s": len(images) / total,
                               "encoder_seconds": enc_seconds, "encoder_share": enc_seconds / total,
                               "subset": len(sub), "rounds": args.rounds, "batched_images_per_s": per["batched"],
                               "one_at_a_time_images_per_s": per["one at a time"],
                               "batched_over_one_at_a_time": per["batched"] / per["one at a time"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
