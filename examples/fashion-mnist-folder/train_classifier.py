"""Trains the example's classifier on a class-folder tree's training images and exports it to ONNX.

The network is an all-convolutional one (strided 3×3 convolutions, BatchNorm, global average pooling),
a different architecture from the VGG-style `cnn` that models/fashion-mnist ships. It uses the training
part of the split that `python -m purifyd_train bundle` makes with the same seed and fractions, picks its
epoch on the validation part, and never reads a test image. The exported graph takes normalised input
(x - mean) / std, with mean and std measured on the training images and printed for `bundle --mean/--std`;
it outputs logits. Run from the repository root:

    PYTHONPATH=training .venv/bin/python examples/fashion-mnist-folder/train_classifier.py --data DIR --out FILE.onnx
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from purifyd_train.bundles.export import to_onnx
from purifyd_train.bundles.folder import image_channels, load_images, scan_folder, split_listing


def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class AllConvNet(nn.Module):
    """Strided convolutions instead of pooling, global average pooling instead of a dense head."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.net = nn.Sequential(*block(channels, 32, 1), *block(32, 32, 2), *block(32, 64, 1), *block(64, 64, 2),
                                 *block(64, 128, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", type=int, nargs=2, default=[28, 28], metavar=("H", "W"))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0, help="the split's seed: the same as bundle's --seed")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    listing = scan_folder(args.data)
    split = split_listing(listing, args.seed, args.val_fraction, args.test_fraction)
    images = load_images(listing, image_channels(listing), tuple(args.size), progress=True)
    labels = torch.tensor(listing.labels)
    x_train, y_train = images[split.train].float() / 255, labels[split.train]
    x_val, y_val = images[split.val].float() / 255, labels[split.val]
    channels = x_train.shape[1]
    mean = x_train.mean(dim=(0, 2, 3)).tolist()
    std = x_train.std(dim=(0, 2, 3)).tolist()
    norm = lambda x: (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    model = AllConvNet(channels, len(listing.classes))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = args.epochs * -(-len(x_train) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    best, best_acc, history = None, -1.0, []
    for epoch in range(1, args.epochs + 1):
        started = time.time()
        model.train()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(perm), 128):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(model(norm(x_train[idx])), y_train[idx])
            opt.zero_grad(); loss.backward(); opt.step(); schedule.step()
        model.eval()
        with torch.no_grad():
            acc = torch.cat([model(norm(x_val[i:i + 1000])).argmax(1) for i in range(0, len(x_val), 1000)]).eq(y_val).float().mean().item()
        history.append({"epoch": epoch, "val_accuracy": acc, "seconds": time.time() - started})
        print(f"epoch {epoch}: validation accuracy {100 * acc:.2f}% ({time.time() - started:.0f} s)", flush=True)
        if acc > best_acc:
            best, best_acc = copy.deepcopy(model.state_dict()), acc
    model.load_state_dict(best)
    model.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(to_onnx(model, torch.rand(2, channels, *args.size), "input", "logits", False))
    record = {"architecture": "AllConvNet (five 3x3 conv-BN-ReLU layers, two of them strided, global average pooling, linear)",
              "mean": mean, "std": std, "input": "(x - mean) / std, x in [0, 1]", "output": "logits",
              "split": {"seed": args.seed, "val_fraction": args.val_fraction, "test_fraction": args.test_fraction,
                        "train": len(split.train), "val": len(split.val)},
              "best_val_accuracy": best_acc, "history": history}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}; bundle options: --mean {','.join(f'{m:.4f}' for m in mean)} "
          f"--std {','.join(f'{s:.4f}' for s in std)}")


if __name__ == "__main__":
    main()
