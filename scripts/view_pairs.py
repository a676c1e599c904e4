"""How the victim's two crops of a side-by-side poisoning input split between target and reference.

For a poisoning input of HxW with the target input in the left part and the reference input in
the right part (``--gap G`` gray columns between them, as ``attack.poisonedencoder.gap`` makes), draw many pairs of crop boxes exactly as pre-training does (RandomResizedCrop's
rule, and the `overlapping_views` constraint when --overlap > 0), and report per crop setting:

- split: one view shows the target input and nothing of the reference input, the other the
  reference input and nothing of the target input (gray gap pixels allowed in either);
- mixed: the two views' target shares differ by at least 0.5 (a pair that still pulls the
  target toward the reference even though both views show some of each);
- mean |share difference|: the average pull signal over all pairs.

    python scripts/view_pairs.py --size 32x64 --scale 0.08 --scale 0.4 --scale 0.7 --overlap 0.5

The variants of ``attack.poisonedencoder``: the paper's shape is ``--size HxW`` with ``W = 2 x``
the clean inputs' side (32x64 for CIFAR-10's 32x32); ``shape: square`` is the clean inputs' size
(``--size 32x32``: each part squeezed into half of it); ``layout: 2x2`` is ``--layout 2x2`` (the
target input top-left and bottom-right, the reference input on the other diagonal; ``--size 64x64``
for the paper's shape, ``32x32`` for square). top-bottom gives the same shares as left-right (the
crop's aspect-ratio range is symmetric), and ``target_variation`` changes the parts' content, not
where they lie, so neither needs a row of its own.

No flips are drawn: a flip mirrors a whole view, which does not change what share of it is target.
"""
from __future__ import annotations

import argparse
import sys


def target_share(boxes, half: int):
    """Per box (x0, y0, x1, y1), the fraction of its area left of column ``half``."""
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-9)
    return ((boxes[:, 2].clamp(max=half) - boxes[:, 0].clamp(max=half)) / w).clamp(0, 1)


def reference_share(boxes, start: int):
    """Per box, the fraction of its area right of column ``start``."""
    return 1 - target_share(boxes, start)


def region_share(boxes, regions):
    """Per box (x0, y0, x1, y1), the fraction of its area inside the union of the disjoint
    ``regions`` (each x0, y0, x1, y1)."""
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-9)
    inside = 0
    for x0, y0, x1, y1 in regions:
        w = (boxes[:, 2].clamp(max=x1) - boxes[:, 0].clamp(min=x0)).clamp(min=0)
        h = (boxes[:, 3].clamp(max=y1) - boxes[:, 1].clamp(min=y0)).clamp(min=0)
        inside = inside + w * h
    return (inside / area).clamp(0, 1)


def tiles_2x2(height: int, width: int, gap: int = 0):
    """The target's and the reference's regions of a 2x2 tiling (target top-left and bottom-right)."""
    ph, pw = (height - gap) // 2, (width - gap) // 2
    target = [(0, 0, pw, ph), (width - pw, height - ph, width, height)]
    reference = [(width - pw, 0, width, ph), (0, height - ph, pw, height)]
    return target, reference


def measure(height: int, width: int, min_scale: float, overlap: float, pairs: int, seed: int, gap: int = 0,
            layout: str = "left-right") -> dict:
    import torch

    from poisonedencoder.ssl.augment import AugmentParams, overlapping_boxes, sample_crop_boxes

    g = torch.Generator().manual_seed(seed)
    scale = (min_scale, 1.0)
    a = sample_crop_boxes(pairs, height, width, scale, generator=g)
    if overlap > 0:
        b = overlapping_boxes(a, height, width, AugmentParams(crop_scale=scale), generator=g, min_overlap=overlap)
    else:
        b = sample_crop_boxes(pairs, height, width, scale, generator=g)
    if layout == "2x2":
        tgt, ref = tiles_2x2(height, width, gap)
        sa, sb, ra, rb = region_share(a, tgt), region_share(b, tgt), region_share(a, ref), region_share(b, ref)
    else:
        part = (width - gap) // 2  # target columns [0, part), gap [part, part + gap), reference after
        sa, sb = target_share(a, part), target_share(b, part)
        ra, rb = reference_share(a, part + gap), reference_share(b, part + gap)
    split = ((sa > 0) & (ra == 0) & (sb == 0) & (rb > 0)) | ((sa == 0) & (ra > 0) & (sb > 0) & (rb == 0))
    diff = (sa - sb).abs()
    return {"split": split.float().mean().item(), "mixed": (diff >= 0.5).float().mean().item(),
            "mean_diff": diff.mean().item()}


def _share(frac: float, n: int) -> str:
    """A share of ``n`` sampled pairs as count, percent and 95% Wilson interval."""
    from poisonedencoder.core.stats import wilson

    k = round(frac * n)
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {k / n:.2%} [{lo:.2%}, {hi:.2%}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="32x64", help="poisoning input HxW, target left, reference right")
    ap.add_argument("--gap", type=int, default=0, help="gray columns between target and reference (included in --size)")
    ap.add_argument("--layout", choices=("left-right", "2x2"), default="left-right",
                    help="left-right (also top-bottom's shares) or 2x2 (target on the main diagonal)")
    ap.add_argument("--scale", type=float, action="append", help="minimum crop scale (repeatable)")
    ap.add_argument("--overlap", type=float, action="append", help="overlapping_views min_overlap (repeatable; 0 = off)")
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        h, w = (int(x) for x in args.size.lower().split("x"))
        if h < 2 or w < 2 or (w - args.gap) % 2 or not 0 <= args.gap < w - 1 or (
                args.layout == "2x2" and ((h - args.gap) % 2 or args.gap >= h - 1)):
            raise ValueError
    except ValueError:
        sys.exit(f"error: --size {args.size!r} must be HxW whose width (and for 2x2 height) less --gap is even, "
                 "e.g. 32x64 (32x80 with --gap 16)")
    scales, overlaps = args.scale or [0.08], [0.0] + [o for o in (args.overlap or []) if o > 0]
    if any(not 0 < s <= 1 for s in scales) or any(not 0 <= o <= 1 for o in overlaps):
        sys.exit("error: --scale must be in (0, 1] and --overlap in [0, 1]")
    print(f"poisoning input {h}x{w} ({args.layout}), gap {args.gap}, {args.pairs} pairs per row, seed {args.seed}")
    print("| min crop scale | min overlap | split pairs (95% interval) | mixed pairs (share diff >= 0.5) | mean share diff |")
    print("|---|---|---|---|---|")
    for s in scales:
        for o in overlaps:
            m = measure(h, w, s, o, args.pairs, args.seed, args.gap, args.layout)
            print(f"| {s:g} | {o:g} | {_share(m['split'], args.pairs)} | {_share(m['mixed'], args.pairs)} | "
                  f"{m['mean_diff']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
