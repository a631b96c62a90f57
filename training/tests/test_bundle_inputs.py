"""The bundle command's inputs: the folder loader, the split, the classifier's checks and conversion, and the
errors it stops on before any training (with their exit statuses, and nothing written under OUT)."""
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import CLASSES, SIZE, TinyNet, export_classifier, synthetic_tensors, train_tiny, write_dataset  # noqa: E402

from purifyd_train.bundles import bundle  # noqa: E402
from purifyd_train.bundles.errors import EX_DATAERR, EX_NOINPUT, EX_USAGE, BundleError  # noqa: E402
from purifyd_train.bundles.folder import image_channels, load_images, scan_folder, split_listing  # noqa: E402
from purifyd_train.bundles.onnx_classifier import is_probabilities, load_classifier  # noqa: E402

MEAN, STD = 0.4, 0.25


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "images", per_class=20)


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    """A classifier that takes (x - 0.4) / 0.25 and outputs logits; one that takes [0, 1] and outputs probabilities."""
    root = tmp_path_factory.mktemp("classifiers")
    torch.set_num_threads(2)
    normalised = train_tiny(0, MEAN, STD, epochs=15)
    plain = train_tiny(1, epochs=15)
    return {"normalised": export_classifier(normalised, root / "normalised.onnx"),
            "probabilities": export_classifier(plain, root / "probabilities.onnx", probabilities=True),
            "normalised_model": normalised, "plain_model": plain}


def copy_tree(dataset: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(dataset, target)
    return target


def run_bundle(tmp_path: Path, data: Path, classifier: Path, *extra: str) -> int:
    """The command's exit status, with nothing written under OUT or the work folder checked by the caller."""
    with pytest.raises(SystemExit) as exit_:
        bundle.main(["--data", str(data), "--classifier", str(classifier), "--out", str(tmp_path / "out"),
                     "--work", str(tmp_path / "work"), "--quick", *extra])
    return exit_.value.code


def assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))
    assert not (tmp_path / "work").exists()  # failed before the work folder: no training started


# ---- the folder loader ------------------------------------------------------------------------------------

def test_scan_lists_sorted_classes_and_their_png_and_jpeg_files(dataset):
    listing = scan_folder(dataset)
    assert listing.classes == tuple(sorted(CLASSES))
    assert listing.counts() == [20] * len(CLASSES)
    suffixes = {p.suffix for p in listing.files}
    assert suffixes == {".png", ".jpg"}
    assert all(p.parent.name == listing.classes[label] for p, label in zip(listing.files, listing.labels))


def test_load_resizes_with_pillow_bilinear_to_the_size_asked(dataset):
    listing = scan_folder(dataset)
    assert image_channels(listing) == 1
    images = load_images(listing, 1, (SIZE, SIZE))
    assert images.shape == (len(listing.files), 1, SIZE, SIZE) and images.dtype == torch.uint8
    big = next(i for i, p in enumerate(listing.files) if Image.open(p).size != (SIZE, SIZE))
    with Image.open(listing.files[big]) as image:
        expected = np.asarray(image.convert("L").resize((SIZE, SIZE), Image.BILINEAR))
    assert np.array_equal(images[big, 0].numpy(), expected)
    wide = load_images(listing, 1, (12, 20))
    assert wide.shape[-2:] == (12, 20)


def test_split_is_stratified_deterministic_and_disjoint(dataset):
    listing = scan_folder(dataset)
    a = split_listing(listing, 0, 0.2, 0.2)
    b = split_listing(listing, 0, 0.2, 0.2)
    c = split_listing(listing, 1, 0.2, 0.2)
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("train", "val", "test"))
    assert not np.array_equal(a.test, c.test)
    together = np.concatenate([a.train, a.val, a.test])
    assert len(together) == len(set(together.tolist())) == len(listing.files)
    record = a.record(listing)
    assert all(v == {"train": 12, "val": 4, "test": 4} for v in record["per_class"].values())


# ---- the classifier ---------------------------------------------------------------------------------------

def test_a_classifier_with_declared_normalisation_converts_to_the_same_logits(classifiers):
    x, y = synthetic_tensors(20, 3)
    spec, module = load_classifier(classifiers["normalised"], x, [MEAN], [STD], classes=len(CLASSES))
    assert spec.output == "logits" and spec.mean == (MEAN,) and spec.std == (STD,) and spec.size == (SIZE, SIZE)
    with torch.no_grad():
        expected = classifiers["normalised_model"]((x - MEAN) / STD)
        assert torch.allclose(module(x), expected, atol=1e-4)
        assert (module(x).argmax(1) == y).float().mean() > 0.9
    # Differentiable: the attacks need a gradient with respect to the pixels.
    x.requires_grad_(True)
    module(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_a_probabilities_classifier_is_detected_and_gives_log_probabilities(classifiers):
    x, _ = synthetic_tensors(20, 4)
    spec, module = load_classifier(classifiers["probabilities"], x, classes=len(CLASSES))
    assert spec.output == "probabilities"
    with torch.no_grad():
        expected = torch.softmax(classifiers["plain_model"](x), 1)
        # Compared as probabilities: a probability that float32 rounds to nearly 0 has no exact logarithm.
        assert torch.allclose(module(x).exp(), expected, atol=1e-5)


def test_probabilities_need_non_negative_rows_summing_to_one():
    assert is_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]))
    assert not is_probabilities(np.array([[0.2, 0.7], [1.0, 0.0]]))
    assert not is_probabilities(np.array([[1.5, -0.5], [0.5, 0.5]]))


# ---- errors before training --------------------------------------------------------------------------------

def test_a_missing_data_folder_or_classifier_is_no_input(tmp_path, dataset, classifiers):
    assert run_bundle(tmp_path, tmp_path / "nowhere", classifiers["normalised"]) == EX_NOINPUT
    assert run_bundle(tmp_path, dataset, tmp_path / "nowhere.onnx") == EX_NOINPUT
    assert_nothing_written(tmp_path)


def test_a_folder_with_non_images_is_refused(tmp_path, dataset, classifiers, capsys):
    data = copy_tree(dataset, tmp_path)
    (data / CLASSES[0] / "notes.txt").write_text("not an image")
    assert run_bundle(tmp_path, data, classifiers["normalised"], "--mean", "0.4", "--std", "0.25") == EX_DATAERR
    assert "notes.txt" in capsys.readouterr().err
    assert_nothing_written(tmp_path)


def test_a_png_that_is_not_an_image_is_refused(tmp_path, dataset, classifiers, capsys):
    data = copy_tree(dataset, tmp_path)
    (data / CLASSES[1] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert run_bundle(tmp_path, data, classifiers["normalised"], "--mean", "0.4", "--std", "0.25") == EX_DATAERR
    assert "broken.png" in capsys.readouterr().err
    assert_nothing_written(tmp_path)


def test_a_single_class_is_refused(tmp_path, dataset, classifiers, capsys):
    data = tmp_path / "one"
    shutil.copytree(dataset / CLASSES[0], data / CLASSES[0])
    assert run_bundle(tmp_path, data, classifiers["normalised"]) == EX_DATAERR
    assert "at least two classes" in capsys.readouterr().err
    assert_nothing_written(tmp_path)


def test_mixed_channel_counts_are_refused(tmp_path, dataset, classifiers, capsys):
    data = copy_tree(dataset, tmp_path)
    Image.new("RGB", (SIZE, SIZE), (10, 200, 30)).save(data / CLASSES[2] / "colour.png")
    assert run_bundle(tmp_path, data, classifiers["normalised"], "--mean", "0.4", "--std", "0.25") == EX_DATAERR
    assert "mixed channel counts" in capsys.readouterr().err
    assert_nothing_written(tmp_path)


def onnx_file(path: Path, input_shape: list, output_shape: list) -> Path:
    """A valid ONNX graph that is not an image classifier: a Flatten or an Identity with the given shapes."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)
    node = helper.make_node("Flatten", ["x"], ["y"]) if len(output_shape) == 2 else helper.make_node("Identity", ["x"], ["y"])
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("input_shape, output_shape, message", [
    ([1, SIZE, SIZE], ["n", SIZE * SIZE], "rank 3"),                  # no batch axis
    ([2, 1, SIZE, SIZE], [2, SIZE * SIZE], "batch axis is fixed"),      # a fixed batch
    (["n", 1, SIZE, SIZE], ["n", 1, SIZE, SIZE], "[batch, classes]"),  # an image-to-image graph
])
def test_an_onnx_file_that_is_not_a_classifier_is_refused(tmp_path, dataset, input_shape, output_shape, message, capsys):
    model = onnx_file(tmp_path / "not-a-classifier.onnx", input_shape, output_shape)
    assert run_bundle(tmp_path, dataset, model) == EX_DATAERR
    assert message in capsys.readouterr().err
    assert_nothing_written(tmp_path)


def test_a_file_that_is_not_onnx_is_refused(tmp_path, dataset, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"definitely not protobuf" * 10)
    assert run_bundle(tmp_path, dataset, model) == EX_DATAERR
    assert "not a valid ONNX model" in capsys.readouterr().err
    assert_nothing_written(tmp_path)


def test_an_output_width_other_than_the_class_count_is_refused(tmp_path, dataset, capsys):
    torch.manual_seed(0)
    model = export_classifier(TinyNet(classes=len(CLASSES) + 1).eval(), tmp_path / "five.onnx")
    assert run_bundle(tmp_path, dataset, model) == EX_DATAERR
    assert f"outputs {len(CLASSES) + 1} scores per image" in capsys.readouterr().err
    assert_nothing_written(tmp_path)


def test_a_channel_count_other_than_the_images_is_refused(tmp_path, dataset, capsys):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, len(CLASSES)))
    model = export_classifier(net.eval(), tmp_path / "rgb.onnx", channels=3)
    assert run_bundle(tmp_path, dataset, model) == EX_DATAERR
    assert "the classifier takes 3" in capsys.readouterr().err
    assert_nothing_written(tmp_path)


def test_too_few_images_per_class_for_the_split_are_refused(tmp_path, dataset, classifiers, capsys):
    data = copy_tree(dataset, tmp_path)
    for extra in sorted((data / CLASSES[3]).iterdir())[4:]:
        extra.unlink()
    assert run_bundle(tmp_path, data, classifiers["normalised"], "--mean", "0.4", "--std", "0.25") == EX_DATAERR
    assert f"{CLASSES[3]} (4)" in capsys.readouterr().err
    assert_nothing_written(tmp_path)


def test_usage_errors_exit_64(tmp_path, dataset, classifiers):
    assert run_bundle(tmp_path, dataset, classifiers["normalised"], "--mean", "0.4") == EX_USAGE
    assert run_bundle(tmp_path, dataset, classifiers["normalised"], "--mean", "0.4,0.4", "--std", "1,1") == EX_USAGE
    assert run_bundle(tmp_path, dataset, classifiers["normalised"], "--eps", "3") == EX_USAGE
    assert run_bundle(tmp_path, dataset, classifiers["normalised"], "--no-such-option") == EX_USAGE
    (tmp_path / "out").mkdir()
    with pytest.raises(SystemExit) as exit_:
        bundle.main(["--data", str(dataset), "--classifier", str(classifiers["normalised"]), "--out", str(tmp_path / "out"),
                     "--work", str(tmp_path / "work"), "--quick"])
    assert exit_.value.code == EX_USAGE and not any((tmp_path / "out").iterdir())


def test_bundle_error_carries_its_status():
    assert BundleError("x").status == EX_DATAERR
