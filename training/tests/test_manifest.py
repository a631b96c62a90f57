"""bundle.toml as export writes it: the keys purifyd reads, for a shipped dataset and for a folder bundle."""
import tomllib

from purifyd_train.bundles.export import bundle_toml
from purifyd_train.bundles.manifest import BundleManifest
from purifyd_train.data.datasets import spec


def test_a_dataset_bundle_serves_its_trained_size_and_takes_pixels_in_0_1():
    manifest = tomllib.loads(bundle_toml(spec("fashion-mnist"), "9.9.9", 16, "a" * 64, "b" * 64, "cnn"))
    assert manifest["input"] == {"channels": 1, "trained_size": [28, 28], "min_size": [28, 28], "max_size": [28, 28]}
    assert manifest["classifier"]["output"] == "probabilities"
    assert not {"mean", "std", "resize"} & set(manifest["classifier"])  # their defaults: 0, 1, bilinear
    assert manifest["training"] == {"attacks": ["CW", "FGSM", "PGD"], "epsilon_linf": 0.1}


def test_a_folder_bundle_states_the_classifiers_normalisation_resize_and_output():
    text = BundleManifest(
        name='my "data"', version="1.0.0", description="d", channels=3, trained_size=(24, 32), min_size=(24, 32),
        max_size=(24, 32), size_multiple=16, purifier_sha256="a" * 64, classifier_sha256="b" * 64,
        architecture="ONNX graph", input_size=(24, 32), output="logits", labels=("cat", "dog", "a\\b"),
        attacks=("PGD", "CW", "FGSM"), epsilon_linf=8 / 255, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26),
        resize="bilinear").to_toml()
    manifest = tomllib.loads(text)
    assert manifest["name"] == 'my "data"'
    assert manifest["input"]["trained_size"] == [24, 32] and manifest["input"]["max_size"] == [24, 32]
    c = manifest["classifier"]
    assert c["labels"] == ["cat", "dog", "a\\b"] and c["output"] == "logits" and c["resize"] == "bilinear"
    assert c["mean"] == [0.49, 0.48, 0.45] and c["std"] == [0.25, 0.24, 0.26]
    assert manifest["training"]["attacks"] == ["CW", "FGSM", "PGD"]
    assert abs(manifest["training"]["epsilon_linf"] - 8 / 255) < 1e-6
