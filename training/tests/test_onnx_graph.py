"""OnnxGraph on hand-built graphs: operators it knows run like ONNX Runtime; others are refused at load.
load_exported_weights on graphs `export` wrote: the same function back in the architecture, or a refusal."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from purifyd_train.bundles.export import WithSoftmax, to_onnx
from purifyd_train.models.networks import PlainCNN, ResNetSmall
from purifyd_train.models.onnx_graph import OnnxGraph, load_exported_weights


def save(tmp_path, nodes, initializers=()):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(initializers))
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_small_graph_matches_onnx_runtime_and_stops_before_softmax_for_logits(tmp_path):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((5, 12)).astype(np.float32), "fc")
    low = numpy_helper.from_array(np.array(-0.5, np.float32), "low")
    path = save(tmp_path, [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c", "low", ""], ["k"]),
        helper.make_node("MaxPool", ["k"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["y"], axis=1)], [w, fc, low])
    x = rng.random((2, 2, 4, 4), dtype=np.float32)
    expected = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    with torch.no_grad():
        assert np.abs(OnnxGraph(path)(torch.from_numpy(x)).numpy() - expected).max() <= 1e-6
        logits = OnnxGraph(path, logits=True)(torch.from_numpy(x))
    assert np.abs(torch.softmax(logits, 1).numpy() - expected).max() <= 1e-6


def test_unknown_operators_and_asymmetric_padding_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Sin"):
        OnnxGraph(save(tmp_path, [helper.make_node("Sin", ["x"], ["y"])]))
    with pytest.raises(ValueError, match="Softmax"):
        OnnxGraph(save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])]), logits=True)
    w = numpy_helper.from_array(np.ones((1, 2, 2, 2), np.float32), "w")
    with pytest.raises(ValueError, match="asymmetric"):
        OnnxGraph(save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0, 1, 1])], [w]))


def randomised(model):
    """A model in eval mode with random BatchNorm statistics, so folding them is not a no-op."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("make", [lambda: ResNetSmall(3, width=8, blocks=(2, 1)), lambda: PlainCNN(1, 8, width=4)])
def test_exported_weights_load_back_into_the_architecture(tmp_path, make):
    model = randomised(make())
    channels, size = (3, 16) if isinstance(model, ResNetSmall) else (1, 8)
    path = tmp_path / "classifier.onnx"
    path.write_bytes(to_onnx(WithSoftmax(model), torch.rand(2, channels, size, size), "image", "probabilities", False))
    restored = make().eval()
    load_exported_weights(restored, OnnxGraph(path, logits=True))
    x = torch.rand(4, channels, size, size)
    with torch.no_grad():
        assert (restored(x) - model(x)).abs().max() <= 1e-5


def test_a_graph_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "classifier.onnx"
    path.write_bytes(to_onnx(WithSoftmax(randomised(ResNetSmall(3, width=8))), torch.rand(2, 3, 16, 16), "image",
                             "probabilities", False))
    with pytest.raises(ValueError, match="does not match|no folded convolution"):
        load_exported_weights(ResNetSmall(3, width=8, blocks=(2, 1)).eval(), OnnxGraph(path, logits=True))
