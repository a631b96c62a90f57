"""Typed records of the bundle command: a class folder's listing and split, the classifier's description,
the command's options and sizes (dataclasses; no behaviour beyond describing themselves)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class FolderListing:
    """The files of a class folder tree, checked for shape but not yet decoded."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]

    def counts(self) -> list[int]:
        return np.bincount(np.asarray(self.labels), minlength=len(self.classes)).tolist()

    def fingerprint(self) -> str:
        """A SHA-256 over the relative paths, labels and sizes of the files: what a work folder's
        checkpoints were made from."""
        h = hashlib.sha256()
        for path, label in zip(self.files, self.labels):
            h.update(f"{path.relative_to(self.root)}\0{label}\0{path.stat().st_size}\n".encode())
        return h.hexdigest()


@dataclass(frozen=True)
class Split:
    """Indices into a listing's files for each part; test images are never used for any choice."""

    seed: int
    val_fraction: float
    test_fraction: float
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def record(self, listing: FolderListing) -> dict:
        """What the card and split.json say about the split."""
        labels = np.asarray(listing.labels)
        per_class = {name: {part: int((labels[getattr(self, part)] == i).sum()) for part in ("train", "val", "test")}
                     for i, name in enumerate(listing.classes)}
        return {"seed": self.seed, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
                "train": len(self.train), "val": len(self.val), "test": len(self.test), "per_class": per_class,
                "listing_sha256": listing.fingerprint()}


@dataclass(frozen=True)
class ClassifierSpec:
    """What the bundle needs to know about a classifier file: its input and output shapes and normalisation."""

    path: Path
    channels: int
    size: tuple[int, int]          # [height, width]
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    output: str = "logits"         # or "probabilities", set by `probe`
    architecture: str = ""

    def record(self) -> dict:
        return {"file": self.path.name, "channels": self.channels, "input_size": list(self.size), "classes": self.classes,
                "mean": list(self.mean), "std": list(self.std), "output": self.output, "architecture": self.architecture}


@dataclass(frozen=True)
class Sizes:
    """The run's sizes: full by default, small with --quick (a few minutes on two cores)."""

    per_attack: int | None   # None: as many as the training images allow, up to per_attack_cap
    per_attack_cap: int
    epochs: int
    batch: int
    feature_epochs: int
    feature_images: int | None  # training images the feature network learns from (None: all)
    gan_val_n: int
    n: int
    adaptive_n: int
    sweep_n: int
    tuning_n: int


@dataclass(frozen=True)
class BundleOptions:
    data: Path
    classifier: Path
    out: Path
    work: Path
    eps: float | None
    quick: bool
    extra_classifiers: tuple[Path, ...]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    name: str
    version: str
    description: str | None
    seed: int
    val_fraction: float
    test_fraction: float
    sizes: Sizes
    threads: int | None
    force: bool
    minutes: float | None
    notes: Path | None = None
    command: str = ""
