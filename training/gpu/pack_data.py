"""Packs a CIFAR-10 folder of ../shared/data losslessly into WebP mosaics, and back.

A lent GPU machine receives at most 64 MiB with each call; the two .npz files (99 MB) pack into
52 MB of WebP (lossless, so every pixel comes back; `unpack` prints a digest of each split's
pixels to compare with `pack`'s).

    python training/gpu/pack_data.py pack ../shared/data/cifar10 PACKED
    python training/gpu/pack_data.py unpack PACKED DATA/cifar10
"""
import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train_subset25k", "test")
COLUMNS, ROWS_PER_FILE, SIDE = 100, 50, 32


def digest(images: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes()).hexdigest()[:16]


def pack(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with np.load(src / f"{split}.npz") as archive:
            x, y = archive["images"], archive["labels"]
        rows = len(x) // COLUMNS
        assert rows * COLUMNS == len(x), f"{split}: {len(x)} images do not fill rows of {COLUMNS}"
        mosaic = x.reshape(rows, COLUMNS, SIDE, SIDE, 3).transpose(0, 2, 1, 3, 4).reshape(rows * SIDE, COLUMNS * SIDE, 3)
        for i in range(0, rows, ROWS_PER_FILE):
            Image.fromarray(mosaic[i * SIDE:(i + ROWS_PER_FILE) * SIDE]).save(
                dst / f"{split}-{i // ROWS_PER_FILE:03d}.webp", lossless=True, method=4, quality=100)
        np.save(dst / f"{split}-labels.npy", y)
        print(split, x.shape, digest(x), flush=True)


def read_rgb(file: Path) -> np.ndarray:
    """A WebP file's pixels; through OpenCV where Pillow was built without WebP."""
    try:
        return np.asarray(Image.open(file).convert("RGB"))
    except OSError:
        import cv2
        return cv2.imread(str(file), cv2.IMREAD_COLOR)[..., ::-1]


def unpack(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        files = sorted(src.glob(f"{split}-[0-9]*.webp"))
        mosaic = np.concatenate([read_rgb(f) for f in files])
        x = mosaic.reshape(-1, SIDE, COLUMNS, SIDE, 3).transpose(0, 2, 1, 3, 4).reshape(-1, SIDE, SIDE, 3)
        y = np.load(src / f"{split}-labels.npy")
        assert len(x) == len(y), f"{split}: {len(x)} images, {len(y)} labels"
        np.savez(dst / f"{split}.npz", images=x, labels=y)
        print(split, x.shape, digest(x), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        raise SystemExit(__doc__)
    {"pack": pack, "unpack": unpack}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
