"""Typed records: the shapes of data that pass between the loaders, the models, the bundle command, the
evaluation and the export (dataclasses; no behaviour beyond describing themselves)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .attacks import AttackConfig


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


def toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_list(values) -> str:
    return "[" + ", ".join(toml_string(v) if isinstance(v, str) else f"{v:.6g}" if isinstance(v, float) else str(v)
                           for v in values) + "]"


@dataclass(frozen=True)
class BundleManifest:
    """bundle.toml's keys (../shared/DESIGN.md §2; read by Sources/PurifyPipeline/ModelBundle.swift). Sizes
    are [height, width]; min_size and max_size bound the images the purifier serves whole."""

    name: str
    version: str
    description: str
    channels: int
    trained_size: tuple[int, int]
    min_size: tuple[int, int]
    max_size: tuple[int, int]
    size_multiple: int
    purifier_sha256: str
    classifier_sha256: str
    architecture: str
    input_size: tuple[int, int]
    output: str
    labels: tuple[str, ...]
    attacks: tuple[str, ...]
    epsilon_linf: float
    mean: tuple[float, ...] | None = None   # written only when the classifier takes normalised input
    std: tuple[float, ...] | None = None
    resize: str | None = None               # written for bundles whose images are resized to input_size
    threat_model: str | None = None         # "adaptive" for a purifier trained against end-to-end attacks
    dataset: str | None = None              # the dataset a variant bundle (e.g. mnist-robust) was trained on
    writer: str = "`python -m purifyd_train export` (training/purifyd_train/export.py)"

    def to_toml(self) -> str:
        classifier_extra = []
        if self.resize:
            classifier_extra.append(f"resize = {toml_string(self.resize)}")
        if self.mean is not None:
            classifier_extra += [f"mean = {toml_list(self.mean)}", f"std = {toml_list(self.std)}"]
        return "\n".join([
            f"# purifyd model bundle: written by {self.writer}.",
            f"name = {toml_string(self.name)}",
            f"version = {toml_string(self.version)}",
            f"description = {toml_string(self.description)}",
            "",
            "[input]",
            f"channels = {self.channels}",
            f"trained_size = {toml_list(self.trained_size)}",
            f"min_size = {toml_list(self.min_size)}",
            f"max_size = {toml_list(self.max_size)}",
            "",
            "[purifier]",
            'file = "purifier.onnx"',
            f"sha256 = {toml_string(self.purifier_sha256)}",
            "fully_convolutional = true",
            f"size_multiple = {self.size_multiple}",
            'padding = "reflect-centered"',
            "",
            "[classifier]",
            'file = "classifier.onnx"',
            f"sha256 = {toml_string(self.classifier_sha256)}",
            f"architecture = {toml_string(self.architecture)}",
            f"input_size = {toml_list(self.input_size)}",
            f"output = {toml_string(self.output)}",
            f"labels = {toml_list(self.labels)}",
            *classifier_extra,
            "",
            "[training]",
            f"attacks = {toml_list(sorted(self.attacks))}",
            f"epsilon_linf = {self.epsilon_linf:.6g}",
            *([f"threat_model = {toml_string(self.threat_model)}"] if self.threat_model else []),
            *([f"dataset = {toml_string(self.dataset)}"] if self.dataset else []),
            "",
        ])


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


@dataclass
class EvaluationInputs:
    """Everything one evaluation runs on: test images, the purifier, the classifiers (the seen one first),
    the images the baselines are tuned on, the budget and the attacks."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    purifier: nn.Module
    generator: dict                      # generator_record of the purifier's generator
    classifiers: dict[str, nn.Module]    # the seen classifier first
    tuning: tuple[torch.Tensor, torch.Tensor]
    eps: float
    attacks: list[AttackConfig]
    sweep_attacks: Callable[[float], list[AttackConfig]]
    figures: Path
    seed: int
    quick: bool
    adaptive_n: int
    sweep_n: int
    n_classes: int = 10
    ablation: tuple[nn.Module, dict] | None = None   # the no-residual purifier and its generator_record
    progress: bool = False
