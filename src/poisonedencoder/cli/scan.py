"""The command line's ``scan``: its options (:func:`add_parser`) and the command (:func:`main`)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from .options import add_trust_torchscript

    p = sub.add_parser("scan", help="find poisoning inputs in an unlabeled image folder: scores, suspects, "
                                    "thresholds without labels (docs/SCAN.md)",
                       description="Scores every image of FOLDER (flat or in class subfolders) with each filter, flags "
                                   "suspects at thresholds set without labels, and writes OUT/scores.csv, suspects.png, "
                                   "report.md and scan.json (and roc.png with --manifest). docs/SCAN.md")
    p.add_argument("folder", metavar="FOLDER", help="the image folder to scan (PNG, JPEG and PIL's other formats)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the outputs go: a new folder, or one an "
                                                               "earlier scan made (nothing of yours is overwritten)")
    p.add_argument("--filters", metavar="LIST", help="comma-separated: crop_disagreement, part_hash, aspect_ratio "
                                                     "(default: all that can run; crop_disagreement needs an encoder)")
    g = p.add_argument_group("crop_disagreement's encoder: one of")
    g.add_argument("--encoder", metavar="PATH", help="your encoder (a state_dict with --arch, or TorchScript with "
                                                     "--trust-torchscript), loaded as evaluate --encoder loads one "
                                                     "(docs/AUDIT.md)")
    g.add_argument("--clean-encoder", metavar="PATH", help="an encoder you trained on clean data (the same loader)")
    g.add_argument("--train", action="store_true", help="pre-train a SimCLR encoder (CNN7, width 16) on FOLDER "
                                                        "itself, poisoning inputs included, in OUT/train/ (resumable)")
    g.add_argument("--arch", help="architecture of a state_dict (as evaluate --arch)")
    g.add_argument("--width", type=int, help="cnn7's / resnet18w's width for --arch (default 32)")
    g.add_argument("--prefix", help="take the state_dict's keys under this prefix (as evaluate --prefix)")
    g.add_argument("--normalize", choices=("imagenet", "cifar10", "none"),
                   help="normalization before the encoder (default: none for an encoder that stores its input "
                        "statistics, as the toolkit's do; imagenet otherwise)")
    add_trust_torchscript(g)
    g.add_argument("--train-epochs", type=int, metavar="N", help="--train's budget in epochs (default 30 without "
                                                                 "--train-minutes)")
    g.add_argument("--train-minutes", type=float, metavar="M", help="--train's budget in minutes of training (checked "
                                                                     "after each epoch; with --train-epochs: the first "
                                                                     "reached)")
    g.add_argument("--image-size", type=int, metavar="N", help="the side crops are resized to before the encoder "
                                                               "(default: the smaller side of FOLDER's most common image "
                                                               "shape; with --train at most 32)")
    t = p.add_argument_group("crop_disagreement's threshold (--fpr alone or with --reference; or --budget)")
    t.add_argument("--fpr", type=float, help="the false-positive rate to set it for (default 0.05): from the folder's "
                                             "own scores (robust z), or from --reference")
    t.add_argument("--reference", metavar="DIR", help="a small folder of images you trust to be clean, scored the same "
                                                      "way: the split-conformal threshold (needs >= 1/fpr - 1 images)")
    t.add_argument("--budget", type=float, metavar="SHARE", help="flag the top SHARE of the scores instead: the "
                                                                 "oracle's choice, marked so in every output")
    p.add_argument("--manifest", metavar="PATH", help="which files are poisoning inputs (the toolkit's manifest.json or "
                                                      "a list): adds AUROC, TPR at FPR, precision and recall, roc.png")
    p.add_argument("--top", type=int, default=48, metavar="K", help="images in suspects.png (default 48)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")


def main(args: argparse.Namespace, say) -> int:
    from ..scan.run import scan

    r = scan(args.folder, args.out, args.filters, args.encoder, args.clean_encoder, args.train, args.arch, args.width,
             args.prefix, args.normalize, args.train_epochs, args.train_minutes, args.image_size, args.fpr,
             args.reference, args.budget, args.manifest, args.top, args.device, log=say,
             trust_torchscript=args.trust_torchscript)
    for name, f in r["filters"].items():
        say(f"{name}: {f['flagged']} of {r['images']} flagged" if f["ran"] else f"{name}: {f['why']}")
    say(f"done in {r['seconds']['total']:.0f}s: {r['out']}/report.md, scores.csv, scan.json")
    return 0
