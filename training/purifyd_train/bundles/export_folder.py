"""Writes one of the shared datasets as a class-folder tree of PNGs, the input `bundle` takes.

Each class becomes `<index>-<label>` (so that sorted folder names keep the dataset's label order; a `/`
in a label becomes `-`); each image `<split>-<index>.png`, training and test images together (the
bundle command makes its own split). `--per-class N` keeps the first N images of each class of each
split, for a smaller tree.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..data.datasets import DEFAULT_DATA_ROOT, load_split, spec


def class_folder(index: int, label: str) -> str:
    name = re.sub(r"[/\\\s]+", "-", label)
    return f"{index}-{name}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data", default=DEFAULT_DATA_ROOT)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-class", type=int, default=None, help="at most this many images per class and split")
    args = p.parse_args(argv)
    ds = spec(args.dataset)
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out} exists and is not empty")
    folders = [args.out / class_folder(i, label) for i, label in enumerate(ds.labels)]
    if len(set(f.name for f in folders)) != len(folders) or len(ds.labels) > 10:
        raise SystemExit("class folder names would collide or not sort in label order")
    for folder in folders:
        folder.mkdir(parents=True)
    for split in ("train", "test"):
        x, y = load_split(ds, split, args.data)
        images = (x * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        labels = y.cpu().numpy()
        keep = np.ones(len(labels), dtype=bool)
        if args.per_class:
            keep[:] = False
            for label in range(len(ds.labels)):
                keep[np.flatnonzero(labels == label)[:args.per_class]] = True
        for i in tqdm(np.flatnonzero(keep), desc=f"{ds.name} {split}", unit="img"):
            image = images[i]
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folders[labels[i]] / f"{split}-{i:05d}.png")
    print(f"wrote {args.out}: {len(folders)} class folders")


if __name__ == "__main__":
    main()
