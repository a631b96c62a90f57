"""The robust variant's card and the AutoAttack section of the oblivious card, rendered from synthetic
robustness.json, recipe.json and bundle.toml files (no attack runs)."""
from dataclasses import asdict, replace
from pathlib import Path

from purifyd_train.cards.robust_card import autoattack_section, main, render_card
from purifyd_train.intervals import wilson
from purifyd_train.robust.evaluate import AttackOutcome, Cascade, MaskingChecks, RobustEvaluation
from purifyd_train.robust.train import recipe_for
from purifyd_train.runs import write_json

EPS = {"mnist": 0.3, "fashion-mnist": 0.1, "cifar10": 8 / 255}
PASSING_CHECKS = MaskingChecks(images=200, sweep={"0.1500": 0.95, "0.3000": 0.9, "0.4500": 0.4, "0.6000": 0.05, "0.9000": 0.0},
                               white_box=0.9, square_broke_after_white_box=0, square_alone=0.97, apgd_ce_alone=0.93,
                               transfer=0.98, sweep_reaches_zero=True, black_box_not_stronger=True, transfer_weaker=True)


def cascade(name: str, clean: float, after: list[float], n: int = 1000) -> Cascade:
    """A cascade of AutoAttack's four attacks leaving the given accuracies."""
    accuracies = [clean] + after
    return Cascade(name, clean, [AttackOutcome(attack, {"eps": 0.3, "steps": 100}, accuracy, round((before - accuracy) * n), 1.0)
                                 for attack, before, accuracy in zip(("APGD-CE", "APGD-T", "FAB-T", "Square"), accuracies, after)])


def evaluation(dataset: str, bundle: str, clean: float, robust: float, quick: bool = False,
               checks: MaskingChecks = PASSING_CHECKS, unseen: tuple[str, ...] = ()) -> RobustEvaluation:
    return RobustEvaluation(bundle=bundle, dataset=dataset, n=1000, seed=0, eps=EPS[dataset], quick=quick,
                            seen=cascade("seen", clean, [robust + 0.02, robust + 0.01, robust, robust]),
                            unseen=[cascade(name, clean - 0.01, [0.5, 0.4, 0.3, 0.3]) for name in unseen],
                            checks=checks, seconds=60.0,
                            command=f"python -m purifyd_train robust-evaluate --bundle {bundle} --n 1000 --seed 0"
                                    + (" --quick" if quick else "") + "".join(f" --unseen {name}" for name in unseen))


def write_bundle(folder: Path, name: str, classifier: bytes = b"classifier", threat_model: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "classifier.onnx").write_bytes(classifier)
    training = f'threat_model = "{threat_model}"\n' if threat_model else ""
    (folder / "bundle.toml").write_text(f'name = "{name}"\n\n[classifier]\nfile = "classifier.onnx"\nsha256 = "{name}-sha"\n'
                                        f'architecture = "cnn"\n\n[training]\n{training}')
    return folder


def robust_bundle(tmp_path: Path, dataset: str, clean: float = 0.99, robust: float = 0.92, quick: bool = False,
                  source_evaluation: RobustEvaluation | None = None, undefended: float = 0.9965,
                  checks: MaskingChecks = PASSING_CHECKS, unseen: tuple[str, ...] = ()) -> Path:
    """A source bundle with its results.json (and robustness.json when given), and its robust variant with
    recipe.json and robustness.json."""
    source = write_bundle(tmp_path / dataset, dataset)
    write_json(source / "results.json", {"seen": "cnn", "clean": {"cnn": {
        "none": {"acc": undefended, "n": 2000, "ci95": list(wilson(round(undefended * 2000), 2000))},
        "purifier": {"acc": 0.996, "n": 2000, "ci95": list(wilson(1992, 2000))}}}})
    if source_evaluation:
        write_json(source / "robustness.json", asdict(source_evaluation))
    bundle = write_bundle(tmp_path / f"{dataset}-robust", f"{dataset}-robust", threat_model="adaptive")
    recipe = asdict(replace(recipe_for(dataset), source_bundle=str(source)))
    write_json(bundle / "recipe.json", {"recipe": recipe, "iteration": 1200, "source_bundle": str(source),
                                        "validation": {"iteration": 1200, "eps": recipe["eps"], "clean": 0.994,
                                                       "robust": 0.834, "loss": 1.5, "seconds": 600.0},
                                        "onnx_max_abs_error": 3.1e-6})
    write_json(bundle / "robustness.json",
               asdict(evaluation(dataset, f"models/{dataset}-robust", clean, robust, quick, checks, unseen)))
    return bundle


def table_row(card: str, start: str) -> str:
    rows = [line for line in card.splitlines() if line.startswith(start)]
    assert len(rows) == 1, (start, rows)
    return rows[0]


def interval(successes: int, n: int = 1000) -> str:
    lo, hi = wilson(successes, n)
    return f"({100 * lo:.1f}–{100 * hi:.1f})"


def test_the_published_anchors_stand_beside_purifyd_and_fashion_mnist_has_none(tmp_path):
    mnist = render_card(robust_bundle(tmp_path / "a", "mnist"))
    assert "| adversarial training (Madry et al. 2018) | white box: attacks on the classifier, which is itself the defence | – | – | 88.4 | – |" in mnist
    assert "| best adversarially trained classifier (RobustBench leaderboard) | white box:" in mnist
    assert table_row(mnist, "| best adversarially trained").split(" | ")[4] == "94.0"
    assert "## Beside the published defences (ℓ∞, ε = 0.3)" in mnist and "no published anchor" not in mnist
    cifar = render_card(robust_bundle(tmp_path / "b", "cifar10", robust=0.45))
    assert table_row(cifar, "| adversarial training").split(" | ")[4] == "44.3"
    assert table_row(cifar, "| best adversarially trained").split(" | ")[4] == "73.7 (75.3 with MeanSparse)"
    assert table_row(cifar, "| best purification, one attempt (DiffPure and successors after adaptive re-evaluation) |"
                     ).split(" | ")[4] == "42–47"
    assert "ε = 0.03137" in cifar and "on CIFAR-10 (JPEG-q75 copy" in cifar
    fashion = render_card(robust_bundle(tmp_path / "c", "fashion-mnist", robust=0.8))
    assert "| no published anchor at this ε | – | – | – | – | – |" in fashion
    assert "Madry" not in fashion and "RobustBench" not in fashion


def test_the_robust_row_gives_clean_oblivious_and_autoattack_accuracy_with_wilson_intervals(tmp_path):
    card = render_card(robust_bundle(tmp_path, "mnist", clean=0.99, robust=0.92))
    row = table_row(card, "| purifyd `mnist-robust` |")
    assert row == (f"| purifyd `mnist-robust` | adaptive: purifier fine-tuned on attacks through purifier and classifier | "
                   f"99.0 {interval(990)} | 98.0 {interval(980)} | **92.0 {interval(920)}** | 1000 |")


def test_the_oblivious_row_is_not_evaluated_until_the_source_has_its_own_robustness_json(tmp_path):
    without = render_card(robust_bundle(tmp_path / "a", "mnist"))
    row = table_row(without, "| purifyd `mnist` |")
    assert row == (f"| purifyd `mnist` | oblivious: purifier trained on attacks against the classifier alone | "
                   f"99.6 {interval(1992, 2000)} | not evaluated | not evaluated | 2000 |")
    assert "The source bundle has no `robustness.json`" in without
    measured = evaluation("mnist", "models/mnist", 0.996, 0.012, checks=replace(PASSING_CHECKS, transfer=0.985))
    with_source = render_card(robust_bundle(tmp_path / "b", "mnist", source_evaluation=measured))
    row = table_row(with_source, "| purifyd `mnist` |")
    assert row.endswith(f"| 99.6 {interval(996)} | 98.5 {interval(985)} | **1.2 {interval(12)}** | 1000 |")
    assert ("`PYTHONPATH=training python -m purifyd_train robust-evaluate --bundle models/mnist --n 1000 --seed 0` wrote "
            "the source bundle's `robustness.json`") in with_source


def test_target_verdicts_say_met_or_by_how_many_points_a_target_is_missed(tmp_path):
    passing = render_card(robust_bundle(tmp_path / "a", "mnist", clean=0.99, robust=0.92, undefended=0.9965))
    assert table_row(passing, "| AutoAttack accuracy at ε = 0.3 ≥ 90% |").endswith(f"| 92.0% (95% interval {interval(920)[1:-1]}%) | met |")
    assert table_row(passing, "| clean accuracy lost ≤ 5 pp |") == (
        "| clean accuracy lost ≤ 5 pp | 99.7% without the purifier (n = 2000, the source bundle's evaluation), "
        "99.0% with it (n = 1000): 0.7 pp | met |")
    assert "What was tried" not in passing
    failing = render_card(robust_bundle(tmp_path / "b", "cifar10", clean=0.92, robust=0.431, undefended=0.99))
    assert table_row(failing, "| AutoAttack accuracy at ε = 0.03137 ≥ 47% |").endswith("| missed by 3.9 pp |")
    assert table_row(failing, "| clean accuracy lost ≤ 5 pp |").endswith(": 7.0 pp | missed by 2.0 pp |")
    assert "What was tried for the missed targets: the one run of the training recipe below" in failing
    (tmp_path / "b" / "cifar10-robust" / "attempts.md").write_text("- TRADES beta 6\n")
    assert "[attempts.md](attempts.md)" in render_card(tmp_path / "b" / "cifar10-robust")


def test_an_autoattack_target_above_the_undefended_clean_accuracy_is_out_of_reach(tmp_path):
    card = render_card(robust_bundle(tmp_path, "fashion-mnist", clean=0.72, robust=0.6, undefended=0.74))
    assert table_row(card, "| AutoAttack accuracy at ε = 0.1 ≥ 75% |").endswith(
        "| missed by 15.0 pp (out of reach: it needs 75.0%, above that classifier's clean accuracy, 74.0%) |")


def test_the_smoke_test_warning_appears_only_for_a_quick_evaluation(tmp_path):
    quick = render_card(robust_bundle(tmp_path / "a", "mnist", quick=True))
    assert quick.startswith("# purifyd bundle `mnist-robust`\n\n> **Smoke test, not a measurement.**")
    assert "--n 1000 --seed 0 --quick`" in quick
    assert "| purifyd `mnist-robust` — smoke test (`--quick`) |" in quick
    full = render_card(robust_bundle(tmp_path / "b", "mnist"))
    assert "Smoke test" not in full and "smoke test" not in full and "--quick" not in full
    assert full.startswith("# purifyd bundle `mnist-robust`\n\nDataset: mnist. Threat model: adaptive")


def test_masking_checks_are_passed_or_failed_as_the_evaluation_judged_them(tmp_path):
    passing = render_card(robust_bundle(tmp_path / "a", "mnist"))
    assert table_row(passing, "| accuracy falls to (nearly) zero as ε grows |").endswith("| 0.0% at ε = 0.9 | passed |")
    assert table_row(passing, "| Square alone is not stronger").endswith(
        "| Square alone 97.0%, APGD-CE alone 93.0%; after APGD-CE, APGD-T and FAB-T (90.0%), Square broke 0 more | passed |")
    assert table_row(passing, "| attacks on the undefended classifier").endswith(
        "| transfer (PGD on the classifier alone) 98.0%, end to end 92.0% | passed |")
    assert "failed" not in passing and "gradient masking: the attacks may be too weak" not in passing
    assert "| 0.15 | 95.0 |\n| 0.3 | 90.0 |\n| 0.45 | 40.0 |\n| 0.6 | 5.0 |\n| 0.9 | 0.0 |" in passing
    masked = replace(PASSING_CHECKS, transfer=0.5, transfer_weaker=False, sweep={**PASSING_CHECKS.sweep, "0.9000": 0.3},
                     sweep_reaches_zero=False)
    failing = render_card(robust_bundle(tmp_path / "b", "mnist", checks=masked))
    assert table_row(failing, "| accuracy falls to (nearly) zero").endswith("| 30.0% at ε = 0.9 | **failed** |")
    assert table_row(failing, "| Square alone is not stronger").endswith("| passed |")
    assert table_row(failing, "| attacks on the undefended classifier").endswith("| **failed** |")
    assert "A failed check is a sign of gradient masking" in failing


def test_cascades_give_each_attacks_accuracy_and_broken_images_for_seen_and_unseen_classifiers(tmp_path):
    card = render_card(robust_bundle(tmp_path, "mnist", clean=0.99, robust=0.92, unseen=("resnet",)))
    assert "### seen classifier (`cnn`)" in card and "### unseen classifier `resnet`: transfer of the purifier" in card
    seen = card.split("### seen classifier (`cnn`)")[1].split("###")[0]
    assert f"| none (clean, through the purifier) | – | 99.0 {interval(990)} | – |" in seen
    assert f'| APGD-CE | `{{"eps": 0.3, "steps": 100}}` | 94.0 {interval(940)} | 50 |' in seen
    assert f"| FAB-T | " in seen and seen.count(f"92.0 {interval(920)}") == 2
    assert "--unseen resnet`" in card


def test_the_card_names_its_source_recipe_and_checkpoint_and_whether_the_classifier_is_the_sources(tmp_path):
    bundle = robust_bundle(tmp_path, "mnist")
    card = render_card(bundle)
    assert f"Source bundle: `{tmp_path / 'mnist'}`" in card
    assert "frozen during training and byte-identical to it (sha256 `mnist-robust-sha`)" in card
    assert "`training/recipes/mnist-robust.sh` reproduces every figure" in card
    assert "- Objective: TRADES, CE(clean) + β·KL(clean ‖ adversarial) with β = 6; ε = 0.3, raised linearly from 0 over the first 30%" in card
    assert "3,000 iterations of 100 training images" in card and "learning rate 0.0001" in card
    assert "Checkpoint: iteration 1200" in card and "on 500 held-out training images" in card
    assert "clean 99.4%, PGD-20 83.4%" in card
    assert "$" not in card and "issue" not in card.lower()
    (bundle / "classifier.onnx").write_bytes(b"another classifier")
    assert "**not** byte-identical to the source bundle's classifier" in render_card(bundle)


def test_the_command_writes_card_md_in_the_bundle(tmp_path):
    bundle = robust_bundle(tmp_path, "mnist")
    main(["--bundle", str(bundle)])
    assert (bundle / "card.md").read_text() == render_card(bundle)


def test_the_card_gives_the_evaluate_command_and_the_sweep_size_that_robustness_json_records(tmp_path):
    bundle = robust_bundle(tmp_path, "mnist")
    card = render_card(bundle)
    assert "python -m purifyd_train robust-evaluate --bundle models/mnist-robust --n 1000" in card
    assert "on the first 200 test images of the same permutation" in card


def test_the_oblivious_card_gains_the_autoattack_section_only_with_a_robustness_json(tmp_path):
    bundle = robust_bundle(tmp_path, "mnist").parent / "mnist"
    assert autoattack_section(bundle) == ""
    write_json(bundle / "robustness.json", asdict(evaluation("mnist", "models/mnist", 0.996, 0.012)))
    section = autoattack_section(bundle)
    assert section.startswith("## AutoAttack, end to end (the attacker knows the purifier; ℓ∞, ε = 0.3)\n\n`PYTHONPATH=training python -m "
                              "purifyd_train robust-evaluate --bundle models/mnist --n 1000 --seed 0` wrote")
    assert section.endswith("\n\n") and "| adversarial training (Madry et al. 2018) |" in section
    assert table_row(section, "| purifyd `mnist` |").endswith(f"| **1.2 {interval(12)}** | 1000 |")
    assert table_row(section, "| purifyd `mnist-robust` |").endswith(f"| **92.0 {interval(920)}** | 1000 |")
    assert f"| Square | " in section and "### seen classifier (`cnn`)" in section


def test_each_shipped_robust_card_is_what_its_files_render():
    models = Path(__file__).resolve().parents[2] / "models"
    shipped = [bundle for bundle in sorted(models.glob("*-robust")) if (bundle / "robustness.json").exists()]
    assert shipped
    for bundle in shipped:
        card = render_card(bundle)
        assert card == (bundle / "card.md").read_text(), f"python -m purifyd_train robust-card --bundle {bundle}"
        assert "$" not in card and "issue" not in card.lower() and "this machine" not in card
