"""Robust fine-tuning, its export as a bundle variant, and the end-to-end AutoAttack evaluation, in quick mode
on the shipped MNIST bundle."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from purifyd_train.data import datasets as data
from purifyd_train.runs import REPO_ROOT
from purifyd_train.models.ops import freeze
from purifyd_train.robust.evaluate import Defended, autoattack, cascade
from purifyd_train.robust.ledger import AttackLedger
from purifyd_train.robust.train import bundle_classifier, bundle_purifier, load_models, pgd, recipe_for

TRAINING = Path(__file__).resolve().parents[1]
SHIPPED = REPO_ROOT / "models" / "mnist"
QUICK = ["--iterations", "4", "--batch", "8", "--attack-steps", "2", "--validation-images", "16",
         "--validation-every", "2", "--threads", "2"]


def command(*args: str, runs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PURIFYD_RUNS": str(runs), "PYTHONPATH": str(TRAINING)}
    return subprocess.run([sys.executable, "-m", "purifyd_train", *args], env=env, capture_output=True, text=True,
                          cwd=TRAINING, timeout=600)


def test_eps_ramps_to_the_budget_and_the_learning_rate_decays_to_zero():
    recipe = recipe_for("mnist", iterations=100)
    assert recipe.eps_at(0) == pytest.approx(0.3 / 30)
    assert recipe.eps_at(29) == pytest.approx(0.3)
    assert recipe.eps_at(99) == pytest.approx(0.3)
    assert recipe.learning_rate_at(0) == pytest.approx(recipe.learning_rate)
    assert recipe.learning_rate_at(100) == pytest.approx(0.0)


def test_pgd_through_purifier_and_classifier_stays_in_the_eps_ball_and_lowers_accuracy():
    x, y = data.test_subset(data.spec("mnist"), 32, 0)
    models = load_models(SHIPPED, x)
    adv = pgd(models, x, y, 0.3, 10, 0.3 / 4)
    assert float((adv - x).abs().max()) <= 0.3 + 1e-6 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        clean = (models.logits(x).argmax(1) == y).float().mean()
        attacked = (models.logits(adv).argmax(1) == y).float().mean()
    assert attacked < clean


def test_autoattack_cascade_attacks_only_what_is_left_and_ends_at_its_last_accuracy():
    x, y = data.test_subset(data.spec("mnist"), 24, 1)
    model = Defended(freeze(bundle_purifier(SHIPPED)), bundle_classifier(SHIPPED, x)).eval()
    result = cascade(model, "seen", x, y, autoattack(model, 0.3, 0, quick=True), seed=0)
    assert [a.name for a in result.attacks] == ["APGD-CE", "APGD-T", "FAB-T", "Square"]
    accuracies = [result.clean] + [a.accuracy for a in result.attacks]
    assert accuracies == sorted(accuracies, reverse=True)
    assert sum(a.broken for a in result.attacks) == round((result.clean - result.robust) * len(x))


def test_a_stopped_cascade_resumes_from_its_ledger_to_the_figures_of_an_uninterrupted_one(tmp_path):
    x, y = data.test_subset(data.spec("mnist"), 20, 2)
    model = Defended(freeze(bundle_purifier(SHIPPED)), bundle_classifier(SHIPPED, x)).eval()
    path = tmp_path / "ledger.pt"
    whole = cascade(model, "seen", x, y, autoattack(model, 0.15, 0, quick=True), 0, AttackLedger(path))
    entries = torch.load(path)
    before = [whole.clean] + [a.accuracy for a in whole.attacks[:-1]]
    assert set(entries) == {f"seen {a.name} #0" for a, left in zip(whole.attacks, before) if left > 0}
    # Stopped after APGD-CE: only its batch is on disk, and the resumed run keeps it as it was.
    torch.save({"seen APGD-CE #0": entries["seen APGD-CE #0"]}, path)
    resumed = cascade(model, "seen", x, y, autoattack(model, 0.15, 0, quick=True), 0, AttackLedger(path))
    assert torch.load(path)["seen APGD-CE #0"][1] == entries["seen APGD-CE #0"][1]
    fresh = cascade(model, "seen", x, y, autoattack(model, 0.15, 0, quick=True), 0)
    for run in (resumed, fresh):
        assert [(a.accuracy, a.broken) for a in run.attacks] == [(a.accuracy, a.broken) for a in whole.attacks]


def test_train_resume_export_and_evaluate_make_a_bundle_purify_loads(tmp_path):
    runs = tmp_path / "runs"
    first = command("robust-train", "--dataset", "mnist", *QUICK, "--until", "3", runs=runs)
    assert first.returncode == 0, first.stderr
    second = command("robust-train", "--dataset", "mnist", *QUICK, runs=runs)
    assert second.returncode == 0, second.stderr
    assert "stopped at iteration 3 of 4" in first.stdout
    assert "resumed at iteration 3 of 4" in second.stdout
    other = command("robust-train", "--dataset", "mnist", *QUICK, "--objective", "pgd", runs=runs)
    assert other.returncode != 0 and "made by another recipe" in other.stderr
    progress = [json.loads(line) for line in (runs / "mnist-robust" / "progress.jsonl").read_text().splitlines()]
    assert [p["iteration"] for p in progress] == [2, 4]

    bundle = tmp_path / "mnist-robust"
    exported = command("robust-export", "--dataset", "mnist", "--out", str(bundle), runs=runs)
    assert exported.returncode == 0, exported.stderr
    manifest = (bundle / "bundle.toml").read_text()
    assert 'name = "mnist-robust"' in manifest and 'threat_model = "adaptive"' in manifest
    assert (bundle / "classifier.onnx").read_bytes() == (SHIPPED / "classifier.onnx").read_bytes()

    purify = REPO_ROOT / ".build" / "debug" / "purify"
    if purify.exists():
        images = tmp_path / "in"
        images.mkdir()
        x, _ = data.test_subset(data.spec("mnist"), 2, 0)
        from PIL import Image
        for i, image in enumerate(x):
            Image.fromarray((image[0].numpy() * 255).round().astype("uint8")).save(images / f"{i}.png")
        run = subprocess.run([str(purify), "--bundle", str(bundle), "--out", str(tmp_path / "out"), str(images)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        report = json.loads((tmp_path / "out" / "0.png.json").read_text())
        assert report["bundle"]["name"] == "mnist-robust"

    evaluated = command("robust-evaluate", "--bundle", str(bundle), "--n", "12", "--sweep-n", "6", "--quick",
                        "--unseen", f"same={SHIPPED / 'classifier.onnx'}", "--threads", "2", runs=runs)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads((bundle / "robustness.json").read_text())
    copy = tmp_path / "copy.onnx"
    copy.write_bytes((SHIPPED / "classifier.onnx").read_bytes())
    again = command("robust-evaluate", "--bundle", str(bundle), "--n", "12", "--sweep-n", "6", "--quick",
                    "--unseen", f"same={SHIPPED / 'classifier.onnx'}", "--unseen", f"copy={copy}", "--threads", "2",
                    runs=runs)
    assert again.returncode == 0, again.stderr
    attacked = [line.split()[1] for line in again.stdout.splitlines() if ": images " in line]
    assert "resuming" in again.stdout and attacked and set(attacked) == {"copy"}, again.stdout
    assert json.loads((bundle / "robustness.json").read_text())["seen"] == result["seen"]
    assert result["dataset"] == "mnist" and result["eps"] == pytest.approx(0.3) and result["quick"]
    assert [a["name"] for a in result["seen"]["attacks"]] == ["APGD-CE", "APGD-T", "FAB-T", "Square"]
    assert result["unseen"][0]["classifier"] == "same"
    assert set(result["checks"]["sweep"]) == {f"{0.3 * f:.4f}" for f in (0.5, 1.0, 1.5, 2.0, 3.0)}


def test_unseen_takes_a_file_or_a_trained_unseen_classifier_and_refuses_anything_else_before_attacking(tmp_path):
    empty = command("robust-evaluate", "--bundle", str(SHIPPED), "--unseen", "resnet=", runs=tmp_path)
    assert empty.returncode != 0 and "NAME or NAME=FILE.onnx" in empty.stderr
    unknown = command("robust-evaluate", "--bundle", str(SHIPPED), "--unseen", "nofile", "--quick", runs=tmp_path)
    assert unknown.returncode != 0 and "not one of mnist's unseen classifiers (resnet, mlp)" in unknown.stderr
    untrained = command("robust-evaluate", "--bundle", str(SHIPPED), "--unseen", "mlp", "--quick", runs=tmp_path)
    assert untrained.returncode != 0 and "classifiers --dataset mnist --only mlp" in untrained.stderr
    assert "APGD-CE" not in unknown.stdout + untrained.stdout
