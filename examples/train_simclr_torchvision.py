"""SimCLR in plain PyTorch + torchvision on an image folder: a stand-in for *your* pre-training
pipeline in the audit recipe of docs/AUDIT.md. Nothing here comes from poisonedencoder.

    poisonedencoder craft configs/digits_demo.yaml --seeds 0 --out runs/audit --export-imagefolder exported/
    python examples/train_simclr_torchvision.py exported/ --out poisoned.pt
    python examples/train_simclr_torchvision.py exported/ --out clean.pt --exclude-poisons
    poisonedencoder evaluate configs/digits_demo.yaml --seeds 0 --out runs/audit \\
        --encoder poisoned.pt --clean-encoder clean.pt --arch resnet18

The model is torchvision's ResNet18 with ``fc`` replaced by Identity (``--arch resnet18`` of
``evaluate``); the views are torchvision's usual SimCLR augmentation, normalized with ImageNet's
statistics (``evaluate``'s default ``--normalize imagenet`` for such a file). RandomResizedCrop
works on the 32x64 / 64x32 poisoning inputs as they are: each crop is a box of the whole image,
resized to ``--size``. The backbone's state_dict is saved (``--torchscript``: TorchScript too).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision import transforms as T

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


class TwoViews:
    def __init__(self, transform):
        self.transform = transform

    def __call__(self, img):
        return self.transform(img), self.transform(img)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view's positive is the other view of its image, the 2N - 2 others are negatives."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(z1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="SimCLR (torchvision ResNet18) on an image folder")
    ap.add_argument("folder", help="an image folder (FOLDER/<class>/*.png), e.g. from craft --export-imagefolder")
    ap.add_argument("--out", required=True, help="where to save the backbone's state_dict")
    ap.add_argument("--exclude-poisons", action="store_true",
                    help="leave out the files FOLDER/manifest.json lists as poisoning inputs (the clean encoder)")
    ap.add_argument("--size", type=int, default=16, help="crop size = the toolkit config's pretrain.image_size")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torchscript", help="also save the backbone as TorchScript here")
    return ap.parse_args(argv)


def main(argv=None) -> Path:
    args = parse(argv)
    torch.manual_seed(args.seed)
    folder = Path(args.folder)
    skip: set[str] = set()
    if args.exclude_poisons:
        manifest = json.loads((folder / "manifest.json").read_text())
        skip = {str((folder / e["file"]).resolve()) for e in manifest["poisoning_inputs"]}
    augment = T.Compose([
        T.RandomResizedCrop(args.size),  # a box of the whole image (8-100% of its area), any aspect, resized
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(0.2),
        T.ToTensor(),
        T.Normalize(*IMAGENET),
    ])
    data = torchvision.datasets.ImageFolder(str(folder), transform=TwoViews(augment),
                                            is_valid_file=lambda p: str(Path(p).resolve()) not in skip)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=len(data) > args.batch_size,
                                         generator=torch.Generator().manual_seed(args.seed))
    backbone = torchvision.models.resnet18(weights=None)
    dim = backbone.fc.in_features
    backbone.fc = nn.Identity()
    head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, 128))
    model = nn.Sequential(backbone, head)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-6)
    print(f"{len(data)} images ({len(skip)} poisoning inputs left out), {args.epochs} epochs")
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for (x1, x2), _ in loader:
            loss = nt_xent(model(x1), model(x2), temperature=0.5)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        if epoch == args.epochs - 1 or (epoch + 1) % max(1, args.epochs // 10) == 0:
            print(f"epoch {epoch + 1}/{args.epochs}: loss {total / max(1, len(loader)):.4f} ({time.time() - t0:.0f}s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(backbone.state_dict(), out)
    if args.torchscript:
        torch.jit.script(backbone.eval()).save(args.torchscript)
    print(f"saved {out}")
    return out


if __name__ == "__main__":
    main()
