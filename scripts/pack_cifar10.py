"""Pack a CIFAR-10 subset into the checkout, so that it travels with the working tree to a GPU
machine that cannot reach the data root (the files are copied byte for byte, not re-encoded).

    python scripts/pack_cifar10.py                      # 2,500 train + 1,000 test inputs per class
    python scripts/pack_cifar10.py --train-per-class 500 --test-per-class 100 --out packed/cifar10_tiny

Source: an image folder ``SRC/{train,test}/<class>/*.jpg`` (default: ``cifar10/`` under the data
root, the dataset ``cifar10-folder``: ``--data-root DIR``, else ``POISONEDENCODER_DATA``, else
``~/.cache/poisonedencoder/data``; docs/CONFIG.md).
Output: the same layout under ``--out`` (default ``packed/cifar10``, ignored by git through
``.gitignore``), the first files of each class in name order, plus ``SOURCE.txt``. The default
subset is about 32 MB (0.9 KB per JPEG) and is what ``configs/cifar10_gpu.yaml`` reads.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

SUFFIXES = {".jpg", ".jpeg", ".png"}


def pack(src: Path, out: Path, train_per_class: int, test_per_class: int) -> dict[str, int]:
    """Copy the first ``*_per_class`` files of every class of both splits; return counts per split."""
    counts = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for split, per_class in (("train", train_per_class), ("test", test_per_class)):
            sdir = src / split
            if not sdir.is_dir():
                raise SystemExit(f"error: {sdir} does not exist; give the CIFAR-10 image folder with --src, or the "
                                 f"data root that holds it as cifar10/ with --data-root or POISONEDENCODER_DATA")
            classes = sorted(p.name for p in sdir.iterdir() if p.is_dir())
            if not classes:
                raise SystemExit(f"error: {sdir} holds no class folders")
            n = 0
            for c in classes:
                files = sorted(f for f in (sdir / c).iterdir() if f.suffix.lower() in SUFFIXES)[:per_class]
                if len(files) < per_class:
                    raise SystemExit(f"error: {sdir / c} holds {len(files)} images, fewer than the {per_class} asked for")
                (tmp / split / c).mkdir(parents=True)
                for f in files:
                    shutil.copyfile(f, tmp / split / c / f.name)
                n += len(files)
            counts[split] = n
        (tmp / "SOURCE.txt").write_text(f"packed by scripts/pack_cifar10.py from {src.resolve()}\n"
                                        f"train: first {train_per_class} files per class ({counts['train']})\n"
                                        f"test: first {test_per_class} files per class ({counts['test']})\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", help="CIFAR-10 image folder (train/ and test/); default: DATA_ROOT/cifar10")
    ap.add_argument("--data-root", metavar="DATA_ROOT",
                    help="the data root (default: $POISONEDENCODER_DATA, else ~/.cache/poisonedencoder/data)")
    ap.add_argument("--out", default="packed/cifar10", help="where to write the subset (inside the checkout)")
    ap.add_argument("--train-per-class", type=int, default=2500)
    ap.add_argument("--test-per-class", type=int, default=1000)
    args = ap.parse_args(argv)
    if args.train_per_class < 1 or args.test_per_class < 1:
        print("error: --train-per-class and --test-per-class must be positive", file=sys.stderr)
        return 2
    if args.src is None:
        from poisonedencoder.data.location import data_root

        args.src = data_root(args.data_root) / "cifar10"
    counts = pack(Path(args.src), Path(args.out), args.train_per_class, args.test_per_class)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"packed {counts['train']} train + {counts['test']} test images ({size / 1e6:.1f} MB) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
