#!/usr/bin/env python3
"""Writes the PurifyEngine test fixtures: small random-weight models exported to ONNX, fixed
inputs, the outputs ONNX Runtime gives for them, and deliberately broken models.

Run from anywhere with the project's venv:
    .venv/bin/python Tests/PurifyEngineTests/Fixtures/make_fixtures.py
Every tensor is raw little-endian float32 in NCHW order; manifest.json lists the cases.

For the shipped models, the same comparison: `--references models/<bundle>` writes
models/<bundle>/reference/ (inputs, ONNX Runtime outputs and a manifest for every .onnx in the
bundle), which ShippedModelTests picks up.
"""
import argparse
import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn import functional as F

from model_family import ResidualUNet, SmallClassifier, export, randomize_batch_norm

HERE = pathlib.Path(__file__).resolve().parent


class OpsCoverage(nn.Module):
    """Ops the purifier and classifier do not use: dilated grouped Conv, InstanceNorm, Sigmoid,
    Clip, Div, ConvTranspose with output_padding, AveragePool without padding counted, MaxPool
    with ceil_mode, Flatten, MatMul, element-wise Mul/Sub of activations. (torch exports F.pad as
    a shape-computing subgraph; Pad is covered by helper_model instead.)"""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2)
        self.norm = nn.InstanceNorm2d(8, affine=True)
        self.up = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1)
        self.weight = nn.Parameter(torch.randn(6 * 6 * 6, 5) * 0.05)
        self.bias = nn.Parameter(torch.randn(5))

    def forward(self, x):
        h = self.conv(x)
        h = self.norm(h)
        h = torch.clamp(torch.sigmoid(h), 0.2, 0.8) / 0.7
        h = self.up(h)
        h = h * torch.sigmoid(h) - 0.25 * h
        h = F.avg_pool2d(h, 3, stride=2, padding=1, count_include_pad=False)
        h = F.max_pool2d(h, 3, stride=2, ceil_mode=True)
        return torch.sigmoid(torch.flatten(h, 1) @ self.weight + self.bias)


def helper_model() -> onnx.ModelProto:
    """What the torch exporter does not write plainly: Pad (reflect, constant), auto_pad,
    Gemm alpha/beta/transB=0, Identity, a residual Add whose skip is the convolution's own input
    (x + conv(x): the sum cannot be fused in place), one whose skip is computed only after
    the convolution, and a ResNet basic block (relu(x + conv(relu(conv(x))))): its sum is fused
    in place and the Relu after it must apply to the sum."""
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (6, 2, 3, 3)).astype(np.float32), "w")
    g = numpy_helper.from_array(rng.normal(0, 0.3, (6 * 6 * 7, 5)).astype(np.float32), "g")
    c = numpy_helper.from_array(rng.normal(0, 0.3, (5,)).astype(np.float32), "c")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 6, 3, 3)).astype(np.float32), "w2")
    w3 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 6, 3, 3)).astype(np.float32), "w3")
    reflect_pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "reflect_pads")
    constant_pads = numpy_helper.from_array(np.array([0, 0, 0, 2, 0, 0, 1, 0], np.int64), "constant_pads")
    pad_value = numpy_helper.from_array(np.array(0.5, np.float32), "pad_value")
    w4 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 6, 3, 3)).astype(np.float32), "w4")
    w5 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 6, 3, 3)).astype(np.float32), "w5")
    nodes = [
        helper.make_node("Pad", ["input", "reflect_pads"], ["reflected"], name="pad_reflect", mode="reflect"),
        helper.make_node("Conv", ["reflected", "w"], ["conv"], name="conv_same", auto_pad="SAME_UPPER",
                         strides=[2, 2]),
        helper.make_node("LeakyRelu", ["conv"], ["act"], name="leaky", alpha=0.1),
        helper.make_node("Conv", ["act", "w2"], ["conv2"], name="conv_residual", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["act", "conv2"], ["residual"], name="add_own_input"),
        helper.make_node("Conv", ["residual", "w3"], ["conv3"], name="conv_before_skip", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["residual"], ["late_skip"], name="skip_after_conv"),
        helper.make_node("Add", ["conv3", "late_skip"], ["summed"], name="add_late_skip"),
        helper.make_node("Conv", ["summed", "w4"], ["block_conv1"], name="block_conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["block_conv1"], ["block_act"], name="block_relu1"),
        helper.make_node("Conv", ["block_act", "w5"], ["block_conv2"], name="block_conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["block_conv2", "summed"], ["block_sum"], name="block_add"),
        helper.make_node("Relu", ["block_sum"], ["block"], name="block_relu2"),
        helper.make_node("Pad", ["block", "constant_pads", "pad_value"], ["padded"], name="pad_constant"),
        helper.make_node("Identity", ["padded"], ["same"], name="identity"),
        helper.make_node("Flatten", ["same"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "g", "c"], ["gemm"], name="gemm", alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["gemm"], ["output"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "helper_ops",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, 7, 7])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 5])],
        initializer=[w, w2, w3, g, c, reflect_pads, constant_pads, pad_value, w4, w5])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def blocked_ops_model() -> onnx.ModelProto:
    """The engine's own paths for blocked tensors: a channel Concat of three 16-channel
    convolutions (copied block by block into the output) and a convolution to 3 channels with a
    5×5 kernel and uneven padding (the engine's narrow-convolution kernel), then Tanh."""
    rng = np.random.default_rng(11)
    weights = {
        "wa": rng.normal(0, 0.3, (16, 2, 3, 3)), "wb": rng.normal(0, 0.3, (16, 2, 1, 1)),
        "wc": rng.normal(0, 0.3, (16, 2, 3, 3)), "wn": rng.normal(0, 0.1, (3, 48, 5, 5)), "bn": rng.normal(0, 0.3, (3,)),
    }
    initializers = [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()]
    nodes = [
        helper.make_node("Conv", ["input", "wa"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["a_act"], name="relu_a"),
        helper.make_node("Conv", ["input", "wb"], ["b"], name="conv_b"),
        helper.make_node("Conv", ["input", "wc"], ["c"], name="conv_c", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["c_act"], name="sigmoid_c"),
        helper.make_node("Concat", ["a_act", "b", "c_act"], ["joined"], name="concat", axis=1),
        helper.make_node("Conv", ["joined", "wn", "bn"], ["narrow"], name="conv_narrow", pads=[2, 1, 1, 2]),
        helper.make_node("Tanh", ["narrow"], ["output"], name="tanh"),
    ]
    graph = helper.make_graph(
        nodes, "blocked_ops",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, 9, 11])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 8, 10])],
        initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def broken_models() -> dict[str, onnx.ModelProto]:
    """Models the loader must reject, each with a node whose name the error has to carry."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")

    def model(node, initializer=()):
        graph = helper.make_graph([node], "broken", [x], [y], initializer=list(initializer))
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    return {
        "unsupported_op.onnx": model(helper.make_node("Einsum", ["input", "input"], ["output"],
                                                      name="mystery_einsum", equation="nchw,nchw->nc")),
        "bad_attribute.onnx": model(helper.make_node("Conv", ["input", "w"], ["output"],
                                                     name="conv_bad_pad", auto_pad="SIDEWAYS"),
                                    [w]),
        "unsupported_attribute.onnx": model(helper.make_node("Softmax", ["input"], ["output"],
                                                             name="softmax_odd", flavour=3)),
    }


def run_cases(model_path: pathlib.Path, shapes, rng, directory: pathlib.Path, model_name: str) -> list[dict]:
    """Random inputs of `shapes` through ONNX Runtime; returns manifest entries."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    cases = []
    for shape in shapes:
        x = rng.random(shape, dtype=np.float32)
        (y,) = session.run(None, {session.get_inputs()[0].name: x})
        stem = f"{model_path.stem}_{'x'.join(map(str, shape))}"
        np.ascontiguousarray(x, dtype="<f4").tofile(directory / f"{stem}.input.bin")
        np.ascontiguousarray(y, dtype="<f4").tofile(directory / f"{stem}.output.bin")
        cases.append({"model": model_name, "input": f"{stem}.input.bin", "inputShape": list(shape),
                      "output": f"{stem}.output.bin", "outputShape": list(y.shape)})
    return cases


def write_references(bundle: pathlib.Path) -> None:
    """Reference outputs for a shipped bundle's models: batch 1 and 4; open spatial axes get 32."""
    directory = bundle / "reference"
    directory.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    cases = []
    for model_path in sorted(bundle.glob("*.onnx")):
        dims = [d.dim_value if d.dim_value > 0 else None
                for d in onnx.load(str(model_path)).graph.input[0].type.tensor_type.shape.dim]
        rest = [d if d is not None else 32 for d in dims[1:]]
        cases += run_cases(model_path, [tuple([batch] + rest) for batch in (1, 4)], rng, directory,
                           f"../{model_path.name}")
    (directory / "manifest.json").write_text(json.dumps({"cases": cases}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--references", nargs="+", metavar="BUNDLE", help="write reference outputs for shipped bundles")
    args = parser.parse_args()
    if args.references:
        for bundle in args.references:
            write_references(pathlib.Path(bundle))
        return

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(2)

    purifier = ResidualUNet(channels=3, ngf=8, depth=3)
    classifier = SmallClassifier(channels=3, classes=10)
    coverage = OpsCoverage()
    for model in (purifier, classifier, coverage):
        randomize_batch_norm(model, generator)
        model.eval()
    export(purifier, str(HERE / "purifier.onnx"), torch.rand(1, 3, 16, 16), spatial_dynamic=True)
    export(classifier, str(HERE / "classifier.onnx"), torch.rand(1, 3, 16, 16), spatial_dynamic=False)
    export(coverage, str(HERE / "coverage.onnx"), torch.rand(1, 4, 12, 12), spatial_dynamic=False)
    onnx.save(helper_model(), str(HERE / "helper_ops.onnx"))
    onnx.save(blocked_ops_model(), str(HERE / "blocked_ops.onnx"))
    for name, model in broken_models().items():
        onnx.save(model, str(HERE / name))

    shapes = {
        "purifier.onnx": [(1, 3, 16, 16), (3, 3, 16, 16), (2, 3, 24, 32), (1, 3, 8, 8)],
        "classifier.onnx": [(1, 3, 16, 16), (4, 3, 16, 16)],
        "coverage.onnx": [(1, 4, 12, 12), (2, 4, 12, 12)],
        "helper_ops.onnx": [(1, 2, 7, 7), (3, 2, 7, 7)],
        "blocked_ops.onnx": [(1, 2, 9, 11), (2, 2, 9, 11)],
    }
    cases = []
    for model_name, model_shapes in shapes.items():
        cases += run_cases(HERE / model_name, model_shapes, rng, HERE, model_name)
    (HERE / "manifest.json").write_text(json.dumps({"cases": cases}, indent=2) + "\n")


if __name__ == "__main__":
    main()
