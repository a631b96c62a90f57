"""A shipped ONNX model as a differentiable PyTorch module, so a bundle alone can be attacked and checked.

`export` writes small graphs (convolutions, BatchNorm, pooling, Gemm and element-wise operators);
`OnnxGraph` runs exactly those with torch operators, in the graph's node order, from the file's
own weights. It needs no training run: `evaluate --through-purify` scores a bundle from models/
against `purify` on a fresh clone. An operator outside that set is a clear error, never a guess.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from .networks import Purifier


def _padding(node: onnx.NodeProto, attrs: dict) -> list[int]:
    """ONNX explicit pads [begin..., end...] as torch's per-side padding; automatic or asymmetric padding is refused."""
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ValueError(f"{node.op_type} node {node.name!r}: auto_pad {attrs['auto_pad']} is not supported")
    pads = attrs.get("pads", [0, 0, 0, 0])
    half = len(pads) // 2
    if pads[:half] != pads[half:]:
        raise ValueError(f"{node.op_type} node {node.name!r}: asymmetric pads {pads} are not supported")
    return pads[:half]


def _conv(attrs, x, w, b=None):
    return F.conv2d(x, w, b, stride=attrs.get("strides", 1), padding=attrs["padding"],
                    dilation=attrs.get("dilations", 1), groups=attrs.get("group", 1))


def _conv_transpose(attrs, x, w, b=None):
    return F.conv_transpose2d(x, w, b, stride=attrs.get("strides", 1), padding=attrs["padding"],
                              output_padding=attrs.get("output_padding", 0), groups=attrs.get("group", 1),
                              dilation=attrs.get("dilations", 1))


def _max_pool(attrs, x):
    return F.max_pool2d(x, attrs["kernel_shape"], stride=attrs.get("strides", 1),
                        padding=attrs["padding"], dilation=attrs.get("dilations", 1))


def _gemm(attrs, a, b, c=None):
    a = a.t() if attrs.get("transA", 0) else a
    b = b.t() if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    return y if c is None else y + attrs.get("beta", 1.0) * c


def _clip(attrs, x, low=None, high=None):
    return torch.clamp(x, None if low is None else low.item(), None if high is None else high.item())


OPERATORS = {
    "Identity": lambda attrs, x: x,
    "Add": lambda attrs, a, b: a + b,
    "Sub": lambda attrs, a, b: a - b,
    "Mul": lambda attrs, a, b: a * b,
    "Div": lambda attrs, a, b: a / b,
    "Relu": lambda attrs, x: F.relu(x),
    "LeakyRelu": lambda attrs, x: F.leaky_relu(x, attrs.get("alpha", 0.01)),
    "Tanh": lambda attrs, x: torch.tanh(x),
    "Softmax": lambda attrs, x: F.softmax(x, dim=attrs.get("axis", -1)),
    "Concat": lambda attrs, *xs: torch.cat(xs, dim=attrs["axis"]),
    "Flatten": lambda attrs, x: torch.flatten(x, attrs.get("axis", 1)),
    "GlobalAveragePool": lambda attrs, x: x.mean(dim=(2, 3), keepdim=True),
    "BatchNormalization": lambda attrs, x, scale, bias, mean, var: F.batch_norm(
        x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5)),
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool,
    "Gemm": _gemm,
    "Clip": _clip,
}
"""Each operator as a function of its attributes (prepared by `_attributes`) and its input tensors."""

PADDED = {"Conv", "ConvTranspose", "MaxPool"}


def _attributes(node: onnx.NodeProto) -> dict:
    """A node's attributes as Python values, checked once at load; padded operators get torch's `padding`."""
    attrs = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        attrs[a.name] = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value
        if isinstance(attrs[a.name], bytes):
            attrs[a.name] = attrs[a.name].decode()
    if node.op_type in PADDED:
        attrs["padding"] = _padding(node, attrs)
    if node.op_type == "ConvTranspose" and "output_shape" in attrs:
        raise ValueError(f"ConvTranspose node {node.name!r}: output_shape is not supported")
    if node.op_type == "MaxPool" and attrs.get("ceil_mode", 0):
        raise ValueError(f"MaxPool node {node.name!r}: ceil_mode is not supported")
    return attrs


class OnnxGraph(nn.Module):
    """Runs an ONNX file's graph with torch operators; gradients flow to the input.

    Constants join the weights and every node's attributes are checked when the file is loaded, so
    a graph this cannot run fails there. `logits=True` stops before a final Softmax, so attacks see
    what the PyTorch classifier returned.
    """

    def __init__(self, path: Path, logits: bool = False):
        super().__init__()
        graph = onnx.load(str(path)).graph
        self.path = path
        self.weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
        self.input_name = next(i.name for i in graph.input if i.name not in self.weights)
        self.output_name = graph.output[0].name
        unsupported = sorted({n.op_type for n in graph.node if n.op_type not in OPERATORS and n.op_type != "Constant"})
        if unsupported:
            raise ValueError(f"{path}: operators {unsupported} are not supported by OnnxGraph")
        self.nodes = []
        for node in graph.node:
            attrs = _attributes(node)
            if node.op_type == "Constant":
                self.weights[node.output[0]] = torch.from_numpy(np.asarray(attrs["value"]).copy())
            else:
                self.nodes.append((node, attrs))
        if logits:
            last = self.nodes[-1][0]
            if last.op_type != "Softmax" or last.output[0] != self.output_name:
                raise ValueError(f"{path}: logits asked for, but the graph does not end in a Softmax")
            self.nodes = self.nodes[:-1]
            self.output_name = last.input[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {**self.weights, self.input_name: x}
        for node, attrs in self.nodes:
            inputs = [values[name] if name else None for name in node.input]
            while inputs and inputs[-1] is None:
                inputs.pop()
            values[node.output[0]] = OPERATORS[node.op_type](attrs, *inputs)
        return values[self.output_name]


def bundle_networks(bundle: Path) -> tuple[OnnxGraph, Purifier]:
    """A bundle's seen classifier (returning logits) and its purifier (padding and cropping included)."""
    manifest = tomllib.loads((bundle / "bundle.toml").read_text())
    seen = OnnxGraph(bundle / manifest["classifier"]["file"], logits=True)
    purifier = Purifier(OnnxGraph(bundle / manifest["purifier"]["file"]), manifest["purifier"]["size_multiple"])
    return seen.eval(), purifier.eval()


def load_exported_weights(model: nn.Module, graph: OnnxGraph) -> None:
    """Loads into `model` the weights of a classifier graph that `export` wrote from the same architecture.

    Initializers the exporter kept by name (`model.` + a state_dict key) load by name. It folded each
    BatchNorm into the convolution before it: the folded weight goes back into that convolution and the
    BatchNorm becomes an exact identity plus the folded bias (the same function in eval mode; the training
    statistics are gone). Folded convolutions pair with the model's in order within each weight shape.
    Buffers the graph does not name (constants of the architecture, which the exporter may merge when
    equal) keep the model's values. A graph that leaves a parameter of the model unfilled, or has a
    convolution left over, is refused.
    """
    path, weights = graph.path, graph.weights
    state = model.state_dict()
    loaded = {key: weights[f"model.{key}"] for key in state if f"model.{key}" in weights}
    folded: dict[tuple[int, ...], list[onnx.NodeProto]] = {}
    for node, _ in graph.nodes:
        if node.op_type == "Conv" and not node.input[1].startswith("model."):
            folded.setdefault(tuple(weights[node.input[1]].shape), []).append(node)
    modules = list(model.named_modules())
    for (conv_name, conv), (bn_name, bn) in zip(modules, modules[1:]):
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
            continue
        candidates = folded.get(tuple(conv.weight.shape))
        if not candidates:
            raise ValueError(f"{path}: no folded convolution of shape {tuple(conv.weight.shape)} left for {conv_name}")
        node = candidates.pop(0)
        bias = weights[node.input[2]] if len(node.input) > 2 else torch.zeros(bn.num_features)
        loaded |= {f"{conv_name}.weight": weights[node.input[1]], f"{bn_name}.weight": torch.ones(bn.num_features),
                   f"{bn_name}.bias": bias, f"{bn_name}.running_mean": torch.zeros(bn.num_features),
                   f"{bn_name}.running_var": torch.full((bn.num_features,), 1.0 - bn.eps)}
    leftover = [node.name or node.output[0] for nodes in folded.values() for node in nodes]
    missing = [name for name, _ in model.named_parameters() if name not in loaded]
    if leftover or missing:
        raise ValueError(f"{path} does not match {type(model).__name__}: graph convolutions left over {leftover}, "
                         f"model parameters unfilled {missing}")
    model.load_state_dict(state | loaded)
