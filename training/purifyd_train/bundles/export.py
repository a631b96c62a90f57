"""Exports a dataset's bundle: purifier.onnx, classifier.onnx (the seen classifier) and bundle.toml.

Both graphs take NCHW float32 in [0,1] with a dynamic batch axis; the purifier also has dynamic
height and width (any multiple of 2**levels). ONNX Runtime is checked against PyTorch before
anything is written into models/.
"""
from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from ..attacks.protocol import training_attacks
from ..data.datasets import spec
from ..runs import REPO_ROOT, log, run_dir, write_json
from ..training.gan import load_generator, run_folder
from ..training.trained import load_classifier
from .manifest import BundleManifest

OPSET = 17
TOLERANCE = 1e-4


class WithSoftmax(nn.Module):
    """Classifier logits to probabilities, so the bundle's classifier output needs no post-processing."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def to_onnx(model: nn.Module, example: torch.Tensor, input_name: str, output_name: str, spatial_dynamic: bool) -> bytes:
    axes = {0: "batch"}
    if spatial_dynamic:
        axes.update({2: "height", 3: "width"})
    buffer = io.BytesIO()
    torch.onnx.export(model.eval(), (example,), buffer, input_names=[input_name], output_names=[output_name],
                      dynamic_axes={input_name: axes, output_name: axes if spatial_dynamic else {0: "batch"}},
                      opset_version=OPSET, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    return buffer.getvalue()


def max_error(model: nn.Module, data: bytes, inputs: list[torch.Tensor]) -> float:
    """Largest |ONNX Runtime - PyTorch| over the given inputs."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_toml(ds, version: str, multiple: int, purifier_sha: str, classifier_sha: str, classifier_name: str) -> str:
    """A dataset bundle's manifest: the purifier serves the trained size (min_size = max_size = it)."""
    size = (ds.size, ds.size)
    return BundleManifest(
        name=ds.name, version=version, description=ds.note or ds.name, channels=ds.channels, trained_size=size,
        min_size=size, max_size=size, size_multiple=multiple, purifier_sha256=purifier_sha,
        classifier_sha256=classifier_sha, architecture=classifier_name, input_size=size, output="probabilities",
        labels=ds.labels, attacks=tuple(sorted({a.name for a in training_attacks(ds.name, ds.eps)})),
        epsilon_linf=ds.eps).to_toml()


def check_purifier(generator: nn.Module, channels: int, size: tuple[int, int]) -> tuple[bytes, float]:
    """The generator as ONNX (dynamic batch, height and width) and the largest |ONNX Runtime - PyTorch| on
    batches at the padded trained size and at another multiple."""
    m = generator.multiple
    h, w = (-(-s // m) * m for s in size)
    torch.manual_seed(0)
    data = to_onnx(generator, torch.rand(2, channels, h, w), "image", "purified", True)
    error = max_error(generator, data, [torch.rand(1, channels, h, w), torch.rand(5, channels, h, w),
                                        torch.rand(2, channels, 2 * m, 3 * m)])
    return data, error


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--out", type=Path, default=None, help="default: models/<dataset>")
    args = p.parse_args(argv)
    ds = spec(args.dataset)
    out = args.out or REPO_ROOT / "models" / ds.name
    out.mkdir(parents=True, exist_ok=True)
    generator, _ = load_generator(run_folder(ds.name) / "generator.pt")
    classifier_name, classifier = load_classifier(ds.name)
    m = generator.multiple
    purifier_onnx, purifier_error = check_purifier(generator, ds.channels, (ds.size, ds.size))
    classifier_model = WithSoftmax(classifier).eval()
    classifier_onnx = to_onnx(classifier_model, torch.rand(2, ds.channels, ds.size, ds.size), "image", "probabilities", False)
    errors = {
        "purifier": purifier_error,
        "classifier": max_error(classifier_model, classifier_onnx, [torch.rand(1, ds.channels, ds.size, ds.size),
                                                                    torch.rand(7, ds.channels, ds.size, ds.size)]),
    }
    log(f"{ds.name}: ONNX Runtime vs PyTorch max |error|: {errors}")
    if max(errors.values()) > TOLERANCE:
        raise SystemExit(f"ONNX Runtime disagrees with PyTorch beyond {TOLERANCE}: {errors}")
    (out / "purifier.onnx").write_bytes(purifier_onnx)
    (out / "classifier.onnx").write_bytes(classifier_onnx)
    (out / "bundle.toml").write_text(bundle_toml(ds, args.version, m, sha256(purifier_onnx), sha256(classifier_onnx), classifier_name))
    write_json(run_dir(ds.name) / "export.json", {"max_abs_error": errors, "opset": OPSET,
                                                   "purifier_bytes": len(purifier_onnx), "classifier_bytes": len(classifier_onnx)})
    log(f"{ds.name}: wrote {out} (purifier {len(purifier_onnx) / 1e6:.2f} MB, classifier {len(classifier_onnx) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
