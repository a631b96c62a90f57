"""The whole training path on tiny sizes: classifiers → pairs → GAN → ONNX export → quick evaluation."""
import json
import math
import re

import numpy as np
import onnxruntime as ort
import pytest
import torch

from purifyd_train.bundles import export
from purifyd_train.cards import dataset_card
from purifyd_train.evaluation import compare_deepfool, evaluate, jpeg_check
from purifyd_train.training import classifiers as train_classifiers
from purifyd_train.training import gan as train_gan
from purifyd_train.training import pairs as make_pairs
from purifyd_train.training.trained import load_classifier
from purifyd_train.data.datasets import DEFAULT_DATA_ROOT, load_split, shuffled, spec
from purifyd_train.models.networks import Purifier
from purifyd_train.models.onnx_graph import OnnxGraph


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not (DEFAULT_DATA_ROOT / "mnist" / "train.npz").exists():
        pytest.fail(f"dataset missing at {DEFAULT_DATA_ROOT}: ../shared/data must sit beside the repository")
    root = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("PURIFYD_RUNS", str(root))
    torch.set_num_threads(2)
    train_classifiers.main(["--dataset", "mnist", "--epochs", "1", "--limit", "256"])
    make_pairs.main(["--dataset", "mnist", "--per-attack", "8", "--noise", "8", "--correlated-noise", "8", "--clean", "16",
                     "--feature-attacks", "4", "--fc-attacks", "2", "--res-attacks", "3"])
    train_gan.main(["--dataset", "mnist", "--epochs", "1", "--limit", "48", "--batch", "16", "--val-n", "16"])
    yield root
    mp.undo()


def test_pairs_hold_every_training_attack_and_clean_pairs(runs):
    pairs = torch.load(runs / "mnist" / "pairs.pt")
    assert pairs["adv"].shape == pairs["clean"].shape
    kinds = set(pairs["kind"])
    assert "clean" in kinds and any(k.startswith("FGSM") for k in kinds) and any(k.startswith("PGD") for k in kinds) and "CW" in kinds
    fgsm = [i for i, k in enumerate(pairs["kind"]) if k == "FGSM(eps=0.3000)"]
    delta = (pairs["adv"][fgsm].float() - pairs["clean"][fgsm].float()).abs().amax()
    assert 0.29 < float(delta) <= 0.301
    noise = [i for i, k in enumerate(pairs["kind"]) if k == "noise"]
    assert len(noise) == 8
    delta = (pairs["adv"][noise].float() - pairs["clean"][noise].float()).abs().flatten(1).amax(1)
    assert ((delta > 0.14) & (delta <= 0.301)).all()
    assert pairs["kind"].count("correlated-noise") == 8
    recorded = json.loads((runs / "mnist" / "pairs.json").read_text())
    assert recorded["noise"]["n"] == 8 and recorded["correlated_noise"]["n"] == 8 and recorded["clean"] == 16
    on_seen = [k for k, v in recorded["attacks"].items() if v["classifier"] == "cnn" and not k.startswith("CW")]
    for source, n in (("features", 4), ("fc", 2), ("res", 3)):
        on_source = {k: v for k, v in recorded["attacks"].items() if v["classifier"] == source}
        assert sorted(on_source) == sorted(f"{k} on {source}" for k in on_seen)
        assert all(v["n"] == n and pairs["kind"].count(k) == n for k, v in on_source.items())
    # One round: the pairs took the seeded permutation's images in order, each with its label.
    x, y = shuffled(*load_split(spec("mnist"), "train"), recorded["seed"])
    n = recorded["images"]
    assert len(pairs["label"]) == n and torch.equal(pairs["label"], y[:n]) and torch.equal(pairs["clean"], x[:n].half())
    pgd = [i for i, k in enumerate(pairs["kind"]) if k == "PGD(eps=0.3000) on features"]
    delta = (pairs["adv"][pgd].float() - pairs["clean"][pgd].float()).abs().amax()
    assert 0.29 < float(delta) <= 0.301


def test_pairs_refuse_more_pairs_than_training_images(runs):
    before = (runs / "mnist" / "pairs.pt").stat().st_mtime_ns
    with pytest.raises(SystemExit, match="60016 pairs a round asked for, but the training set has 60000 images"):
        make_pairs.main(["--dataset", "mnist", "--per-attack", "1", "--noise", "0", "--clean", "60008"])
    assert (runs / "mnist" / "pairs.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize("correlated", [False, True])
def test_sign_noise_sits_at_a_budget_and_correlates_only_when_asked(correlated):
    torch.manual_seed(0)
    x = torch.full((64, 1, 28, 28), 0.5)
    delta = make_pairs.sign_noise(x, 0.1, correlated) - x
    budgets = delta.abs().flatten(1)
    assert torch.allclose(budgets, budgets[:, :1].expand_as(budgets))
    assert all(any(math.isclose(b, 0.1 * f, rel_tol=1e-5) for f in make_pairs.NOISE_BUDGETS) for b in budgets[:, 0].tolist())
    same_sign = (delta[..., 1:].sign() == delta[..., :-1].sign()).float().mean().item()
    assert same_sign > 0.75 if correlated else abs(same_sign - 0.5) < 0.02


def test_pairs_in_rounds_attack_the_same_images_again_with_other_attacks(runs, tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "classifiers").symlink_to(runs / "mnist" / "classifiers")
    monkeypatch.setenv("PURIFYD_RUNS", str(tmp_path))
    make_pairs.main(["--dataset", "mnist", "--per-attack", "4", "--noise", "4", "--clean", "8", "--rounds", "2"])
    pairs = torch.load(tmp_path / "mnist" / "pairs.pt")
    record = json.loads((tmp_path / "mnist" / "pairs.json").read_text())
    images = 6 * 4 + 2 * 4 + 4 + 8  # FGSM and PGD at three budgets, C&W twice the images, noise, clean
    assert record["images"] == images and record["rounds"] == 2 and len(pairs["adv"]) == 2 * images
    assert record["clean"] == 16 and record["noise"]["n"] == 8 and sum(a["n"] for a in record["attacks"].values()) == 64
    first, second = pairs["clean"][:images], pairs["clean"][images:]
    assert torch.equal(second, first.roll(-images // 2, 0))  # the same images, moved along by half of them
    moved = [(j - images // 2) % images for j in range(images)]
    assert sum(pairs["kind"][j] != pairs["kind"][images + k] for j, k in enumerate(moved)) > images // 2
    # The GAN holds out the images after the first round's, not after twice as many.
    ds, root = spec("mnist"), tmp_path / "mnist"
    assert len(train_gan.held_out_images(ds, root, len(pairs["adv"]), 60000 - images, DEFAULT_DATA_ROOT)[0]) == 60000 - images
    with pytest.raises(SystemExit, match="held out for validation"):
        train_gan.held_out_images(ds, root, len(pairs["adv"]), 60000 - images + 1, DEFAULT_DATA_ROOT)


def test_gan_checkpoint_resumes_where_it_stopped(runs):
    history = json.loads((runs / "mnist" / "gan" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1]
    train_gan.main(["--dataset", "mnist", "--epochs", "2", "--limit", "48", "--batch", "16", "--val-n", "16", "--bf16"])
    history = json.loads((runs / "mnist" / "gan" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(math.isfinite(h[k]) for h in history for k in ("d", "gan", "l1", "perc"))
    assert all(h["val_images"] == "held-out training" and h["val_n"] == 16 for h in history)
    best = max(history, key=lambda h: h["val_pgd_purified_acc"] + h["val_clean_purified_acc"])
    assert torch.load(runs / "mnist" / "gan" / "generator.pt")["epoch"] == best["epoch"]


def test_gan_refuses_to_resume_a_checkpoint_with_other_options(runs):
    before = (runs / "mnist" / "gan" / "checkpoint.pt").read_bytes()
    with pytest.raises(SystemExit, match=r"gan's checkpoint was trained with seed 2 \(now 7\); limit 48 \(now 40\): "):
        train_gan.main(["--dataset", "mnist", "--epochs", "3", "--limit", "40", "--batch", "16", "--val-n", "16",
                        "--seed", "7"])
    assert (runs / "mnist" / "gan" / "checkpoint.pt").read_bytes() == before


def test_gan_resumes_a_checkpoint_recorded_before_the_cgan_weight_and_fresh_attacks_existed(runs):
    common = ["--dataset", "mnist", "--name", "gan-before-weight", "--limit", "16", "--batch", "16", "--val-n", "16"]
    train_gan.main([*common, "--epochs", "1"])
    path = runs / "mnist" / "gan-before-weight" / "checkpoint.pt"
    state = torch.load(path)
    del state["options"]["loss_weights"]["gan"], state["options"]["schedule"]["fresh_attacks"]
    torch.save(state, path)
    train_gan.main([*common, "--epochs", "2"])
    assert torch.load(path)["epoch"] == 2


def test_gan_refuses_validation_images_that_the_pairs_used(runs):
    train_images = 60000
    with pytest.raises(SystemExit, match="held out for validation"):
        train_gan.main(["--dataset", "mnist", "--name", "gan-overlap", "--epochs", "1", "--limit", "16",
                        "--val-n", str(train_images)])


def test_gan_fine_tune_with_guidance_starts_from_another_run_and_records_its_weights(runs):
    train_gan.main(["--dataset", "mnist", "--init", "gan", "--name", "gan-guided", "--epochs", "3", "--limit", "48",
                    "--batch", "16", "--val-n", "16", "--perceptual-weight", "5", "--guidance-weight", "2",
                    "--feature-guidance-weight", "3", "--source-guidance-weight", "4", "--gan-weight", "0.5"])
    history = json.loads((runs / "mnist" / "gan-guided" / "history.json").read_text())
    assert [(h["run"], h["epoch"]) for h in history] == [("gan", 1), ("gan", 2), ("gan-guided", 3)]
    assert all(history[-1][k] > 0 and math.isfinite(history[-1][k]) for k in ("guide", "fguide", "sguide"))
    assert history[0]["fguide"] == 0 and history[0]["sguide"] == 0
    state = torch.load(runs / "mnist" / "gan-guided" / "generator.pt")
    assert state["loss_weights"] == {"gan": 0.5, "l1": 100.0, "perceptual": 5.0, "guidance": 2.0, "feature_guidance": 3.0,
                                     "source_guidance": 4.0}


def test_source_guidance_names_the_source_network_it_lacks(runs, tmp_path, monkeypatch):
    classifiers = tmp_path / "mnist" / "classifiers"
    classifiers.mkdir(parents=True)
    for name in ("cnn", "features", "fc"):
        (classifiers / f"{name}.pt").symlink_to(runs / "mnist" / "classifiers" / f"{name}.pt")
    monkeypatch.setenv("PURIFYD_RUNS", str(tmp_path))
    with pytest.raises(SystemExit, match="source network res is not trained .*: train it with `classifiers --dataset mnist --only res`"):
        train_gan.guiding_sources("mnist")


def test_a_missing_seen_classifier_names_the_command_that_trains_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PURIFYD_RUNS", str(tmp_path))
    with pytest.raises(SystemExit, match="the classifier cnn is not trained .*: train it with `classifiers --dataset mnist --only cnn`"):
        load_classifier("mnist")


@pytest.mark.parametrize("option", [["--only", "fc"], ["--epochs", "3"], ["--lr", "0.1"], ["--bf16"]])
def test_classifiers_from_a_bundle_refuse_the_options_of_training(option, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PURIFYD_RUNS", str(tmp_path))
    with pytest.raises(SystemExit):
        train_classifiers.main(["--dataset", "mnist", "--from-bundle", "models/mnist", *option])
    assert "--from-bundle restores the seen classifier as it was trained" in capsys.readouterr().err
    assert not (tmp_path / "mnist").exists()


def test_gan_with_decay_weight_average_and_flips_ships_the_average_and_resumes_it(runs):
    folder = runs / "mnist" / "gan-averaged"
    common = ["--dataset", "mnist", "--name", "gan-averaged", "--limit", "48", "--batch", "16", "--val-n", "16",
              "--decay-from", "0.5", "--weight-average", "0.9", "--flip"]
    train_gan.main([*common, "--epochs", "1"])
    last, kept = torch.load(folder / "checkpoint.pt"), torch.load(folder / "generator.pt")
    assert kept["schedule"] == {"decay_from": 0.5, "weight_average": 0.9, "flip": True, "fresh_attacks": False}
    assert last["average_updates"] == 3
    assert all(torch.equal(kept["generator"][k], v) for k, v in last["generator_average"].items())
    assert any(not torch.equal(last["generator"][k], v) for k, v in last["generator_average"].items())
    # Three batches: the last one starts at progress 2/3 of one epoch, a third of the way down from 0.5.
    assert json.loads((folder / "history.json").read_text())[-1]["lr"] == pytest.approx(2e-4 * 2 / 3)
    train_gan.main([*common, "--epochs", "2"])
    last = torch.load(folder / "checkpoint.pt")
    assert last["average_updates"] == 6
    # Resumed at epoch 1 of 2; the last batch starts at progress (1 + 2/3) / 2.
    assert json.loads((folder / "history.json").read_text())[-1]["lr"] == pytest.approx(2e-4 / 3)


def test_fresh_perturbations_remake_attacks_and_noise_on_dealt_out_images_and_keep_the_rest(runs):
    pairs = torch.load(runs / "mnist" / "pairs.pt")
    record = json.loads((runs / "mnist" / "pairs.json").read_text())
    kinds = pairs["kind"]
    assert len(pairs["label"]) == len(kinds)
    before = {k: v.clone() for k, v in pairs.items() if k != "kind"}
    networks = train_gan.attacked_networks("mnist", record, {"cnn": load_classifier("mnist")[1]})
    assert sorted(networks) == ["cnn", "fc", "features", "res"]
    torch.manual_seed(0)
    fresh = train_gan.FreshPerturbations(pairs, record, networks, 0.3, seed=0)
    fresh.remake()
    kept = torch.tensor([k == "clean" or k == "CW" for k in kinds])
    for key in ("adv", "clean", "label"):
        assert torch.equal(pairs[key][kept], before[key][kept])
    remade = fresh.rows
    assert len(remade) == (~kept).sum() and sorted(remade.tolist()) == (~kept).nonzero().squeeze(1).tolist()
    # The same images and labels, dealt out anew: each clean image still carries its own label.
    assert sorted(pairs["label"][remade].tolist()) == sorted(before["label"][remade].tolist())
    assert not torch.equal(pairs["clean"][remade], before["clean"][remade])
    moved = {img.numpy().tobytes(): int(y) for img, y in zip(before["clean"][remade], before["label"][remade])}
    assert all(moved[img.numpy().tobytes()] == int(y) for img, y in zip(pairs["clean"][remade], pairs["label"][remade]))
    # Every remade pair is its kind's perturbation of its new clean image.
    delta = (pairs["adv"][remade].float() - pairs["clean"][remade].float()).abs().flatten(1).amax(1)
    for row, d in zip(remade.tolist(), delta.tolist()):
        budget = record["attacks"][kinds[row]]["params"]["eps"] if kinds[row] in record["attacks"] else 0.3
        assert d <= budget + 1e-3 and (kinds[row] not in ("FGSM(eps=0.3000)", "noise") or d > 0.14)


def test_gan_with_fresh_attacks_remakes_pairs_after_the_first_epoch_and_records_it(runs, capsys):
    train_gan.main(["--dataset", "mnist", "--name", "gan-fresh", "--epochs", "2", "--limit", "48", "--batch", "16",
                    "--val-n", "16", "--fresh-attacks"])
    kept = torch.load(runs / "mnist" / "gan-fresh" / "generator.pt")
    assert kept["schedule"]["fresh_attacks"] is True
    assert len(re.findall(r"remade \d+ pairs", capsys.readouterr().out)) == 1


@pytest.fixture(scope="module")
def bundle(runs, tmp_path_factory):
    """The tiny run exported once, for the tests that read its ONNX files."""
    out = tmp_path_factory.mktemp("bundle")
    export.main(["--dataset", "mnist", "--out", str(out)])
    return out


def test_export_writes_a_bundle_that_onnx_runtime_runs_like_pytorch(runs, bundle):
    manifest = (bundle / "bundle.toml").read_text()
    assert 'name = "mnist"' in manifest and "size_multiple = 16" in manifest
    purifier = ort.InferenceSession(str(bundle / "purifier.onnx"))
    x = np.random.default_rng(0).random((3, 1, 32, 48), dtype=np.float32)
    y = purifier.run(None, {"image": x})[0]
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    generator, _ = train_gan.load_generator(runs / "mnist" / "gan" / "generator.pt")
    with torch.no_grad():
        assert np.abs(generator(torch.from_numpy(x)).numpy() - y).max() <= 1e-4
    classifier = ort.InferenceSession(str(bundle / "classifier.onnx"))
    probs = classifier.run(None, {"image": x[:, :, :28, :28].copy()})[0]
    assert probs.shape == (3, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_onnx_graph_runs_the_exported_bundle_like_the_trained_models(runs, bundle):
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0), requires_grad=True)
    generator, _ = train_gan.load_generator(runs / "mnist" / "gan" / "generator.pt")
    graph_purifier = Purifier(OnnxGraph(bundle / "purifier.onnx"), 16)
    with torch.no_grad():
        assert (graph_purifier(x) - Purifier(generator.eval())(x)).abs().max() <= 1e-5
    _, classifier = load_classifier("mnist")
    logits = OnnxGraph(bundle / "classifier.onnx", logits=True)(x)
    assert (logits - classifier(x)).abs().max() <= 1e-4
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_quick_evaluation_writes_results_and_card(runs, tmp_path):
    evaluate.main(["--dataset", "mnist", "--quick", "--n", "12", "--adaptive-n", "6", "--sweep-n", "6", "--val-n", "12"])
    out = runs / "mnist" / "eval-quick"
    results = json.loads((out / "results.json").read_text())
    assert set(results["oblivious"]) == {"cnn", "resnet", "mlp"}
    assert set(results["oblivious"]["cnn"]) == {"FGSM", "BIM", "PGD", "CW", "MIFGSM", "AutoAttack", "DeepFool", "Square"}
    assert set(results["adaptive"]) == {"PGD", "APGD"}
    tuning = results["baseline_tuning"]
    assert tuning["bits"] in (1, 2, 3, 4, 5, 6) and f"bitdepth{tuning['bits']}" in results["baselines"]
    assert results["baselines"]["tv"]["weight"] == tuning["tv_weight"]
    text = (out / "card.md").read_text()
    assert "Adaptive white-box" in text and "jpeg75" in text and "JPEG-compressed" not in text  # MNIST is no JPEG copy
    assert "- `fc` (training attacks only)" in text and "- `features` (perceptual features, training attacks; never evaluated)" in text
    assert "(`fc`): hidden layers [1024], seed 0" in text and "the unseen `mlp` is a separate network: hidden layers [512, 256]" in text
    assert "- `res` (training attacks only)" in text and "on the seen classifier, n = 6 (the first test images" in text
    assert ("(`res`): width 24, residual blocks per stage [1, 1], seed 0" in text
            and "the unseen `resnet` is a separate network: width 16, residual blocks per stage [1, 1, 1]" in text)
    assert (out / "figures" / "contact_sheet.png").stat().st_size > 1000
    assert (out / "figures" / "accuracy_vs_eps.png").stat().st_size > 1000
    assert results["training_records"]["history"] and results["training_records"]["pairs"]["clean"] == 16
    with pytest.MonkeyPatch.context() as mp:  # the card again, from results.json alone: no run folder
        mp.setenv("PURIFYD_RUNS", str(tmp_path / "empty"))
        dataset_card.write_card(spec("mnist"), results, tmp_path, sweep_n=6)
    assert (tmp_path / "card.md").read_text() == text
    elsewhere = tmp_path / "candidate"  # --out: another bundle folder, here for the card alone
    elsewhere.mkdir()
    (elsewhere / "results.json").write_text((out / "results.json").read_text())
    evaluate.main(["--dataset", "mnist", "--card-only", "--out", str(elsewhere)])
    assert (elsewhere / "card.md").read_text() == text


def test_compare_deepfool_reports_both_versions_per_classifier(runs, capsys):
    compare_deepfool.main(["--dataset", "mnist", "--n", "4"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "success" in line]
    assert len(lines) == 6 and sum("BoxDeepFool" in line for line in lines) == 3


def test_jpeg_check_scores_jpeg_alone_and_after_the_bundles_purifier(bundle, capsys):
    jpeg_check.main(["--dataset", "mnist", "--n", "6", "--quality", "60", "--bundle", str(bundle)])
    lines = [line for line in capsys.readouterr().out.splitlines() if "(n=6)" in line]
    assert [line.split()[2] for line in lines] == ["clean", "PGD", "CW"]
    assert all(f"{name} " in lines[0] for name in ("none", "purifier", "jpeg60", "purifier+jpeg60"))
