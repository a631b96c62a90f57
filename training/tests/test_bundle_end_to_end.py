"""`bundle --quick` on a small generated dataset with a classifier trained here, then purifyd's own `purify` CLI
on the bundle it wrote.

PURIFY_BIN names the purify binary (`make test` builds it and sets it); without it the test fails, since
a bundle that purify cannot load is the failure this test is for.
"""
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import CLASSES, SIZE, export_classifier, train_tiny, write_dataset  # noqa: E402

from purifyd_train.bundles import bundle  # noqa: E402
from purifyd_train.cards.bundle_card import targets  # noqa: E402

MEAN, STD = 0.4, 0.25


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The bundle, made once: 4 classes of 40 images (PNG and JPEG, some at twice the size), a classifier that
    takes normalised input and outputs logits, and one that outputs probabilities for the transfer rows."""
    root = tmp_path_factory.mktemp("bundle-e2e")
    data = write_dataset(root / "data", per_class=40, seed=1)
    torch.set_num_threads(2)
    classifier = export_classifier(train_tiny(0, MEAN, STD, epochs=15), root / "classifier.onnx")
    extra = export_classifier(train_tiny(1, epochs=15), root / "extra.onnx", probabilities=True)
    out = root / "out"
    bundle.main(["--data", str(data), "--classifier", str(classifier), "--out", str(out), "--quick",
                 "--mean", str(MEAN), "--std", str(STD), "--extra-classifier", str(extra), "--work", str(root / "work"),
                 "--name", "synthetic"])
    return {"root": root, "data": data, "classifier": classifier, "out": out}


def test_the_bundle_holds_the_users_classifier_byte_for_byte_and_a_manifest_that_says_how_to_feed_it(made):
    out = made["out"]
    assert sorted(p.name for p in out.iterdir()) == ["bundle.toml", "card.md", "classifier.onnx", "figures",
                                                     "purifier.onnx", "results.json", "split.json"]
    assert (out / "classifier.onnx").read_bytes() == made["classifier"].read_bytes()
    manifest = tomllib.loads((out / "bundle.toml").read_text())
    assert manifest["name"] == "synthetic"
    assert manifest["input"] == {"channels": 1, "trained_size": [SIZE, SIZE], "min_size": [SIZE, SIZE],
                                 "max_size": [SIZE, SIZE]}
    c = manifest["classifier"]
    assert c["labels"] == list(CLASSES) and c["output"] == "logits" and c["input_size"] == [SIZE, SIZE]
    assert c["mean"] == [MEAN] and c["std"] == [STD] and c["resize"] == "bilinear"
    import hashlib
    for key in ("purifier", "classifier"):
        assert manifest[key]["sha256"] == hashlib.sha256((out / manifest[key]["file"]).read_bytes()).hexdigest()
    assert not list(made["root"].glob(".out.*")), "the staging folder was renamed into place"


def test_the_purifier_runs_in_onnx_runtime_at_the_trained_size(made):
    session = ort.InferenceSession(str(made["out"] / "purifier.onnx"))
    x = np.random.default_rng(0).random((3, 1, SIZE, SIZE), dtype=np.float32)
    y = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1


def test_the_card_and_results_cover_the_protocol_and_the_split(made):
    results = json.loads((made["out"] / "results.json").read_text())
    assert set(results["oblivious"]) == {"classifier", "extra"}
    assert {"FGSM", "PGD", "CW", "AutoAttack", "DeepFool", "Square"} <= set(results["oblivious"]["classifier"])
    assert {"jpeg75", "median3", "tv"} <= set(results["oblivious"]["classifier"]["PGD"])
    assert set(results["adaptive"]) == {"PGD", "APGD"}
    assert results["extra_classifiers"]["extra"]["output"] == "probabilities"
    split = json.loads((made["out"] / "split.json").read_text())
    assert split["train"] + split["val"] + split["test"] == 4 * 40 and len(split["test_files"]) == split["test"]
    card = (made["out"] / "card.md").read_text()
    assert "$" not in card.replace("$$", "")  # every placeholder filled
    for heading in ("## Targets", "## Data and split", "## Headline", "## Transfer: oblivious attacks on `extra`",
                    "## Adaptive white-box attacks", "## GAN training history"):
        assert heading in card
    for target, measured, verdict, met in targets(results):
        assert f"| {target} | {measured} | {verdict} |" in card
    assert (made["out"] / "figures" / "contact_sheet.png").stat().st_size > 0
    assert (made["out"] / "figures" / "accuracy_vs_eps.png").stat().st_size > 0


def test_purify_purifies_the_folder_images_with_the_new_bundle(made, tmp_path):
    binary = os.environ.get("PURIFY_BIN")
    assert binary and Path(binary).is_file(), ("PURIFY_BIN must name the purify binary "
                                               "(make test builds it: swift build --product purify)")
    # Images at the bundle's size, one per class (the purifier serves SIZE×SIZE: min_size = max_size).
    # Copied under their class's name: purify names each output after its input, and the class folders share names.
    inputs = tmp_path / "in"
    inputs.mkdir()
    picks = []
    for name in CLASSES:
        source = next(p for p in sorted((made["data"] / name).iterdir()) if p.suffix == ".png" and _side(p) == SIZE)
        picks.append(inputs / f"{name}-{source.name}")
        shutil.copyfile(source, picks[-1])
    result = subprocess.run([binary, "--bundle", str(made["out"]), *map(str, picks), "--out", str(tmp_path / "purified"),
                             "--json"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_WAIT_POLICY": "passive"})
    assert result.returncode == 0, result.stderr
    right = 0
    for pick, name in zip(picks, CLASSES):
        report = json.loads((tmp_path / "purified" / f"{pick.name}.json").read_text())
        assert report["status"] == "purified", report
        assert report["bundle"]["name"] == "synthetic"
        assert (tmp_path / "purified" / pick.name).is_file()
        # The classifier only gets these right on (x - mean) / std: purify must have read the bundle's normalisation.
        right += report["classification"]["input"][0]["label"] == name
    assert right >= len(CLASSES) - 1


def _side(path: Path) -> int:
    from PIL import Image
    with Image.open(path) as image:
        return image.size[0]
