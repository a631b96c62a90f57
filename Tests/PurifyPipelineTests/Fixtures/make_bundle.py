"""Writes the pipeline tests' model bundle: random-weight, MNIST-shaped, same layout as a shipped one.

Run from the repository root with the project venv:
    PYTHONPATH=training .venv/bin/python Tests/PurifyPipelineTests/Fixtures/make_bundle.py

purifier.onnx: UNetGenerator(1, ngf=8, cap=16) with random weights (dynamic batch, height, width;
sides a multiple of 16). classifier.onnx: PlainCNN(1, 28, width=8) + softmax, random weights.
bundle.toml: written by the exporter's own `bundle_toml`, so its keys are the shipped ones, with a
domain of any size from 1×1 to 16384×16384 (pipeline tests push images of many sizes through it).
"""
import re
from dataclasses import replace
from pathlib import Path

import torch

from purifyd_train.bundles.export import WithSoftmax, bundle_toml, sha256, to_onnx
from purifyd_train.data.datasets import spec
from purifyd_train.models.networks import PlainCNN, UNetGenerator

OUT = Path(__file__).resolve().parent / "bundle"


def main() -> None:
    torch.manual_seed(4)
    ds = replace(spec("mnist"), name="fixture-mnist", note="random-weight test bundle (pipeline tests)")
    generator = UNetGenerator(1, ngf=8, cap=16).eval()
    classifier = WithSoftmax(PlainCNN(1, 28, width=8)).eval()
    purifier = to_onnx(generator, torch.rand(2, 1, 32, 32), "image", "purified", True)
    probabilities = to_onnx(classifier, torch.rand(2, 1, 28, 28), "image", "probabilities", False)
    OUT.mkdir(exist_ok=True)
    (OUT / "purifier.onnx").write_bytes(purifier)
    (OUT / "classifier.onnx").write_bytes(probabilities)
    manifest = bundle_toml(ds, "0.1.0", generator.multiple, sha256(purifier), sha256(probabilities), "cnn")
    for key, size in (("min_size", "[1, 1]"), ("max_size", "[16384, 16384]")):
        manifest, found = re.subn(rf"^{key} = .*$", f"{key} = {size}", manifest, flags=re.M)
        assert found == 1, f"the exporter wrote no {key}"
    (OUT / "bundle.toml").write_text(manifest)


if __name__ == "__main__":
    main()
