"""A user's ONNX classifier: checked, probed with ONNX Runtime, and converted to a differentiable torch module.

The classifier is never retrained. onnx2torch gives the torch module that the attacks and the GAN's
guidance differentiate through; ONNX Runtime checks it on real images. A classifier that takes
normalised input (x - mean) / std gets that normalisation in front of it, so the module takes pixels
in [0, 1] like every model of the project; one that outputs probabilities gets their logarithm after
it, so the attacks see logits (the softmax of log p is p).
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ..models.networks import Normalize
from .errors import BundleError, no_input, usage_error
from .records import ClassifierSpec

# How far a row of a probabilities output may sum from 1, and how far torch may differ from ONNX Runtime.
PROBABILITY_SUM_TOLERANCE = 1e-3
CONVERSION_TOLERANCE = 1e-4


def _dims(value_info) -> list:
    """A graph input's or output's dimensions: ints where fixed, names (or None) where not."""
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.tensor_type.shape.dim]


def _architecture(model: onnx.ModelProto) -> str:
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    main = [f"{n} {op}" for op, n in sorted(ops.items(), key=lambda kv: -kv[1]) if op in
            ("Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Add")]
    return f"ONNX graph ({', '.join(main[:5]) or f'{len(model.graph.node)} nodes'})"


def inspect_classifier(path: Path, mean: list[float] | None, std: list[float] | None) -> tuple[ClassifierSpec, onnx.ModelProto]:
    """Reads and checks an ONNX classifier: one NCHW float32 input with a free batch axis and fixed C, H, W;
    one [batch, classes] output. BundleError (65; 66 when missing) naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise no_input(f"no classifier at {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as error:  # onnx raises DecodeError, ValidationError, ... for a file that is not a model
        raise BundleError(f"{path}: not a valid ONNX model ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise BundleError(f"{path}: a classifier has one input and one output; this graph has {len(inputs)} inputs and "
                          f"{len(model.graph.output)} outputs")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise BundleError(f"{path}: the input must be float32, not {onnx.TensorProto.DataType.Name(inputs[0].type.tensor_type.elem_type)}")
    dims = _dims(inputs[0])
    if len(dims) != 4:
        raise BundleError(f"{path}: the input must be NCHW (rank 4, a batch axis first), not rank {len(dims)} {dims}")
    batch, channels, height, width = dims
    if isinstance(batch, int) and batch > 0:
        raise BundleError(f"{path}: the input's batch axis is fixed at {batch}; export it with a dynamic batch axis "
                          "(torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}}))")
    if not all(isinstance(d, int) and d > 0 for d in (channels, height, width)):
        raise BundleError(f"{path}: the input's channels, height and width must be fixed, not {dims[1:]}")
    if channels not in (1, 3):
        raise BundleError(f"{path}: the input has {channels} channels; purifyd serves 1 (grey) or 3 (RGB)")
    out = _dims(model.graph.output[0])
    if len(out) != 2 or not isinstance(out[1], int) or out[1] < 2:
        raise BundleError(f"{path}: the output must be [batch, classes] (one row of scores per image), not {out or 'unknown'}")
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) != channels:
            raise usage_error(f"{name} has {len(values)} values; the classifier takes {channels} channels")
    if std is not None and any(s <= 0 for s in std):
        raise usage_error("--std values must be positive")
    spec = ClassifierSpec(path, channels, (height, width), out[1], tuple(mean or [0.0] * channels),
                          tuple(std or [1.0] * channels), architecture=_architecture(model))
    return spec, model


def run_onnx(path: Path, x: torch.Tensor, spec: ClassifierSpec, batch: int = 256) -> np.ndarray:
    """The classifier's output on pixels x in [0, 1] (normalised as declared), through ONNX Runtime."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.concatenate([session.run(None, {name: (x[i:i + batch].numpy() - mean) / std})[0]
                           for i in range(0, len(x), batch)])


def is_probabilities(scores: np.ndarray) -> bool:
    """Rows that are non-negative and sum to 1 on a batch of real images: a softmax output."""
    return bool((scores >= 0).all() and np.abs(scores.sum(1) - 1).max() <= PROBABILITY_SUM_TOLERANCE)


def _inert_torchvision() -> None:
    """onnx2torch imports torchvision for its NMS and RoiAlign converters only; the PyPI torchvision cannot load
    beside the CPU torch wheel (../shared/DESIGN.md §4). Where none is installed, a stand-in whose functions
    raise takes its place, so that onnx2torch loads and a classifier that needs those ops fails clearly."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return

    def unavailable(*_args, **_kwargs):
        raise RuntimeError("torchvision ops (NMS, RoiAlign, box_convert) are not available: a classifier with these "
                           "detection ops cannot be converted here")

    vision, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    for name in ("nms", "batched_nms", "box_convert", "roi_align"):
        setattr(ops, name, unavailable)
    vision.ops = ops
    vision.__version__ = "0+inert-stand-in"
    sys.modules.update({"torchvision": vision, "torchvision.ops": ops})


class LogOf(nn.Module):
    """log p, clamped away from zero: logits for a classifier that outputs probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.model(x).clamp_min(1e-12))


def to_torch(model: onnx.ModelProto, spec: ClassifierSpec) -> nn.Module:
    """The classifier as a frozen torch module on [0, 1] pixels that outputs logits."""
    _inert_torchvision()
    from onnx2torch import convert
    try:
        converted = convert(model)
    except Exception as error:
        raise BundleError(f"{spec.path}: onnx2torch cannot convert this graph ({type(error).__name__}: {error})") from None
    layers: list[nn.Module] = []
    if spec.mean != (0.0,) * spec.channels or spec.std != (1.0,) * spec.channels:
        layers.append(Normalize(list(spec.mean), list(spec.std)))
    layers.append(converted)
    net: nn.Module = nn.Sequential(*layers)
    if spec.output == "probabilities":
        net = LogOf(net)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_classifier(path: Path, x: torch.Tensor, mean: list[float] | None = None, std: list[float] | None = None,
                    classes: int | None = None) -> tuple[ClassifierSpec, nn.Module]:
    """Checks, probes and converts a classifier on sample images x (float N,C,H,W in [0, 1] at its input size):
    the output kind comes from ONNX Runtime's rows on x, and the torch module must agree with ONNX Runtime
    on x. `classes`, when given, is the number of class folders the output width must equal."""
    spec, model = inspect_classifier(path, mean, std)
    if classes is not None and spec.classes != classes:
        raise BundleError(f"{path}: the classifier outputs {spec.classes} scores per image, but the data has {classes} "
                          "classes (one per sub-folder, in sorted order)")
    try:
        scores = run_onnx(path, x, spec)
    except Exception as error:
        raise BundleError(f"{path}: ONNX Runtime cannot run it on {tuple(x.shape)} images "
                          f"({type(error).__name__}: {str(error).splitlines()[0]})") from None
    if scores.ndim != 2 or scores.shape != (len(x), spec.classes):
        raise BundleError(f"{path}: on a batch of {len(x)} images the output has shape {scores.shape}, not "
                          f"[{len(x)}, {spec.classes}]: the batch axis does not carry through")
    spec = ClassifierSpec(**{**spec.__dict__, "output": "probabilities" if is_probabilities(scores) else "logits"})
    module = to_torch(model, spec)
    with torch.no_grad():
        mine = module(x).numpy()
    reference = np.log(np.clip(scores, 1e-12, None)) if spec.output == "probabilities" else scores
    # Compare where it matters: softmax-invariant logits are compared after removing each row's mean.
    error = float(np.abs((mine - mine.mean(1, keepdims=True)) - (reference - reference.mean(1, keepdims=True))).max())
    if spec.output == "probabilities":
        error = float(np.abs(np.exp(mine) - scores).max())
    if error > CONVERSION_TOLERANCE * max(1.0, float(np.abs(reference).max())):
        raise BundleError(f"{path}: the converted torch module disagrees with ONNX Runtime by {error:.2e}")
    return spec, module
