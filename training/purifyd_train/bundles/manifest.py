"""bundle.toml: the manifest purifyd reads beside a bundle's two ONNX files."""
from __future__ import annotations

from dataclasses import dataclass


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
    writer: str = "`python -m purifyd_train export` (training/purifyd_train/bundles/export.py)"

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
