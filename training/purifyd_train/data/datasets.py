"""Datasets from ../shared/data (NumPy .npz: images N,H,W,C uint8; labels N uint8)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEFAULT_DATA_ROOT = Path(os.environ.get("PURIFYD_DATA", Path(__file__).resolve().parents[3].parent / "shared" / "data"))


@dataclass(frozen=True)
class DatasetSpec:
    """What the training code needs to know about one dataset."""

    name: str          # bundle name, e.g. "fashion-mnist"
    folder: str        # folder under the data root
    train_split: str
    channels: int
    size: int          # native side length
    eps: float         # the l-inf budget of the evaluation protocol
    labels: tuple[str, ...]
    note: str = ""
    source_jpeg_quality: int | None = None  # the copy's own JPEG quality, when it is a JPEG copy


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", "mnist", "train", 1, 28, 0.3, tuple(str(d) for d in range(10))),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", "fashion_mnist", "train", 1, 28, 0.1,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "cifar10": DatasetSpec(
        "cifar10", "cifar10", "train_subset25k", 3, 32, 8 / 255,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        note="CIFAR-10 (JPEG-q75 copy, 25k-image class-balanced training subset)", source_jpeg_quality=75),
}


def spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise SystemExit(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


def load_split(ds: DatasetSpec, split: str, root: Path = DEFAULT_DATA_ROOT) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (images N,C,H,W float32 in [0,1], labels N int64) on the default device, in the file's order."""
    folder = "train" if split == "train" else "test"
    file = Path(root) / ds.folder / f"{ds.train_split if folder == 'train' else 'test'}.npz"
    with np.load(file) as archive:
        images, labels = archive["images"], archive["labels"]
    target = torch.get_default_device()
    x = torch.from_numpy(images).to(target).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    y = torch.from_numpy(labels.astype(np.int64)).to(target)
    return x, y


def shuffled(x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation: the shared files are class-sorted."""
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    return x[perm], y[perm]


def train_tail(ds: DatasetSpec, n: int, seed: int, root: Path = DEFAULT_DATA_ROOT,
               after: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The last n images of a seeded permutation of the training set; ValueError if they reach into its first `after`."""
    x, y = shuffled(*load_split(ds, "train", root), seed)
    if after + n > len(x):
        raise ValueError(f"the first {after} of {len(x)} training images leave fewer than {n} after them")
    return x[-n:], y[-n:]


def test_subset(ds: DatasetSpec, n: int, seed: int, root: Path = DEFAULT_DATA_ROOT) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images of a seeded permutation of the test set (class-balanced in expectation)."""
    x, y = shuffled(*load_split(ds, "test", root), seed)
    return x[:n], y[:n]
