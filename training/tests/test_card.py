import json
from pathlib import Path

from purifyd_train.attacks.protocol import PAPER_ATTACKS
from purifyd_train.cards.dataset_card import (attack_pairs, jpeg_source_caveat, kept_epochs, pair_rounds, purifier_origin,
                                              render_card, share, source_role, sweep_section, target_rows, targets_section,
                                              unseen_role, validation_sets)
from purifyd_train.cards.phrases import (history_table, loss_line, mean_interval, noise_pairs, pair_attack_parameters, points,
                                         schedule_line, weak_attacks)
from purifyd_train.data.datasets import DATASETS, spec
from purifyd_train.evaluation.options import recorded_options


def test_validation_sets_name_the_images_of_each_run():
    held_out = {"val_images": "held-out training", "val_n": 500}
    assert validation_sets([{"run": "gan", **held_out}]).startswith("500 held-out training images")
    mixed = validation_sets([{"run": "gan-g10"}, {"run": "gan-g10"}, {"run": "gan", **held_out}])
    assert mixed.startswith("500 test images (seed 99") and mixed.endswith("for gan")
    assert "for gan-g10;" in mixed


def test_kept_epochs_name_each_generators_epoch_when_validation_chose_them():
    selected = {"epoch": 12, "selection": "best"}
    assert kept_epochs(selected, {"epoch": 9}) == "; each keeps its best epoch on validation: 12 with residual blocks, 9 without"
    assert kept_epochs(selected, None) == "; each keeps its best epoch on validation"
    assert kept_epochs({"epoch": 3}, {"epoch": 3}) == ""


def test_noise_pairs_name_correlated_noise_only_when_the_pairs_hold_some():
    budgets = [0.05, 0.075, 0.1]
    independent = {"noise": {"n": 4000, "eps": budgets}}
    assert noise_pairs(independent) == "; random-sign noise at ε ∈ {0.05, 0.075, 0.1}: n=4000"
    none = {**independent, "correlated_noise": {"n": 0, "eps": budgets, "sigma": [0.5, 3.0]}}
    assert noise_pairs(none) == noise_pairs(independent)
    both = noise_pairs({**independent, "correlated_noise": {"n": 8000, "eps": budgets, "sigma": [0.5, 3.0]}})
    assert both.endswith("blurred with σ uniform in [0.5, 3] px) at ε ∈ {0.05, 0.075, 0.1}: n=8000")
    assert noise_pairs({}) == ""


def test_attack_pairs_name_the_attacked_classifier_in_old_and_new_records():
    old = {"n": 4000, "seen_accuracy": 0.0285, "params": {}}
    assert attack_pairs("PGD(eps=0.0500)", old, "cnn") == "PGD(eps=0.0500): n=4000, cnn accuracy 2.9%"
    new = {"n": 1500, "classifier": "features", "accuracy": 0.125, "params": {}}
    assert attack_pairs("PGD(eps=0.0500) on features", new, "cnn") == "PGD(eps=0.0500) on features: n=1500, features accuracy 12.5%"


def test_loss_line_names_each_guidance_term_and_reads_records_without_them():
    paper = loss_line({"l1": 100.0, "perceptual": 1.0, "guidance": 0.0})
    assert paper == "Loss: cGAN + 100·L1 + 1·perceptual (the paper's weights)."
    seen_only = loss_line({"l1": 100.0, "perceptual": 1.0, "guidance": 10.0})
    assert "10·guidance" in seen_only and "feature guidance" not in seen_only
    both = loss_line({"l1": 100.0, "perceptual": 1.0, "guidance": 10.0, "feature_guidance": 5.0})
    assert "10·guidance" in both and "5·feature guidance" in both and both.endswith("see [attempts.md](attempts.md) for why.")
    assert "source guidance" not in both
    assert loss_line({"guidance": 10.0}, reason="the reason").endswith("no guidance term; the reason.")
    sources = loss_line({"l1": 100.0, "perceptual": 1.0, "guidance": 10.0, "source_guidance": 4.0})
    assert "4·source guidance (the same L1 averaged over the source networks `fc` and `res`" in sources
    without_gan = loss_line({"gan": 0.0, "l1": 100.0, "perceptual": 1.0, "guidance": 10.0})
    assert without_gan.startswith("Loss: 0·cGAN + 100·L1") and "paper's weights)" not in without_gan
    assert "not a conditional GAN" in without_gan and "not a conditional GAN" not in seen_only


def test_purifier_origin_names_a_generator_trained_without_the_cgan_term():
    assert purifier_origin({}).startswith("the pix2pix-style GAN of")
    assert purifier_origin({"gan": 0.0}).startswith("the generator of the pix2pix-style GAN of")
    assert "without the cGAN term" in purifier_origin({"gan": 0.0}) and "without" not in purifier_origin({"gan": 0.1})


def test_source_role_lists_what_the_purifier_took_from_it():
    assert source_role("features", {"loss_weights": {"guidance": 10.0}}, {"attacks": {"CW": {"n": 8}}}) == "perceptual features only"
    pairs = {"attacks": {"PGD(eps=0.1000) on features": {"classifier": "features"}, "FGSM(eps=0.1000) on fc": {"classifier": "fc"}}}
    both = source_role("features", {"loss_weights": {"feature_guidance": 10.0}}, pairs)
    assert both == "perceptual features, feature guidance, training attacks; never evaluated"
    assert source_role("fc", {"loss_weights": {"feature_guidance": 10.0}}, pairs) == "training attacks only"
    guided = {"loss_weights": {"feature_guidance": 10.0, "source_guidance": 10.0}}
    assert source_role("fc", guided, pairs) == "source guidance, training attacks; never evaluated"
    assert source_role("res", guided, pairs) == "source guidance only"
    assert source_role("features", guided, pairs) == "perceptual features, feature guidance, training attacks; never evaluated"


def test_unseen_role_names_a_source_network_of_the_same_family_only_when_it_made_pairs():
    pairs = {"attacks": {"PGD(eps=0.1000) on fc": {"classifier": "fc"}, "PGD(eps=0.1000)": {"classifier": "cnn"}}}
    assert unseen_role("resnet", pairs) == "unseen: transfer of the purifier"
    assert "against `fc`, a separate network of the same family" in unseen_role("mlp", pairs)
    pairs["attacks"]["FGSM(eps=0.1000) on res"] = {"classifier": "res"}
    assert "against `res`" in unseen_role("resnet", pairs)


def test_schedule_line_says_what_the_shipped_weights_are():
    assert schedule_line(None) == "- Optimiser: Adam, learning rate 0.0002, β = (0.5, 0.999) for both networks."
    line = schedule_line({"decay_from": 0.5, "weight_average": 0.999})
    assert "first 50% of the run" in line and "moving average" in line and "decay 0.999 per step" in line
    assert "moving average" not in schedule_line({"decay_from": 0.5, "weight_average": None})
    assert "mirrored" in schedule_line({"flip": True}) and "mirrored" not in line
    assert "remade at the start of every epoch" in schedule_line({"fresh_attacks": True})
    assert "remade" not in schedule_line({"flip": True, "fresh_attacks": False})


def test_pair_rounds_are_named_only_when_there_were_several():
    assert pair_rounds({"seed": 1}) == "" and pair_rounds({"rounds": 1, "images": 10}) == ""
    assert pair_rounds({"rounds": 3, "images": 24200}).startswith(" (3 rounds over the same 24,200 training images")


def test_the_jpeg_caveat_names_the_copys_quality_and_the_command_that_compares_others():
    assert spec("cifar10").source_jpeg_quality == 75 and spec("mnist").source_jpeg_quality is None
    text = jpeg_source_caveat(spec("cifar10"))
    assert "JPEG-compressed at quality 75" in text and "`python -m purifyd_train jpeg-check --dataset cifar10`" in text


def test_history_table_gives_source_guidance_a_column_only_where_a_run_trained_with_it():
    losses = {"d": 0.6, "gan": 0.8, "l1": 0.04, "perc": 0.15, "val_pgd_purified_acc": 0.8, "val_clean_purified_acc": 0.9}
    old = {"epoch": 1, **losses, "guide": 0.3}
    table = history_table([old, {"epoch": 2, **losses, "guide": 0.2, "fguide": 0.1, "sguide": 0.0}])
    assert "source guidance" not in table[0] and table[1] == "|---" * 10 + "|"
    assert table[2] == "| gan | 1 | 0.600 | 0.800 | 0.0400 | 0.1500 | 0.3000 | – | 80.0 | 90.0 |"
    guided = history_table([old, {"epoch": 2, "run": "gan-s", **losses, "guide": 0.2, "fguide": 0.1, "sguide": 0.25}])
    assert guided[0].endswith("| guidance | feature guidance | source guidance | val PGD purified acc | val clean purified acc |")
    assert guided[2].endswith("| 0.3000 | – | – | 80.0 | 90.0 |") and guided[3].startswith("| gan-s | 2 |")
    assert all(row.count("|") == guided[0].count("|") for row in guided)


def test_points_never_print_a_negative_zero():
    assert points(-0.04) == "0.0 pp" and points(-0.04, signed=True) == "+0.0 pp"
    assert points(0.44) == "0.4 pp" and points(-13.44, signed=True) == "-13.4 pp" and points(5.9, signed=True) == "+5.9 pp"


def test_mean_interval_averages_the_paper_attacks_bounds_and_ignores_the_others():
    per_attack = {a: {"purifier": {"acc": 0.8, "ci95": [0.70 + i / 100, 0.90 - i / 100]}} for i, a in enumerate(PAPER_ATTACKS)}
    per_attack["Square"] = {"purifier": {"acc": 0.1, "ci95": [0.0, 0.2]}}
    lo, hi = mean_interval(per_attack, "purifier")
    assert (round(lo, 6), round(hi, 6)) == (0.73, 0.87)


def _results(seen_purified: float, best_baseline: float, seen_clean: float = 0.85, mlp_clean: float = 0.594,
             mlp_purified: float = 0.209) -> dict:
    return {"seen": "resnet",
            "summary": {"resnet": {"mean_purified": seen_purified, "mean_baselines": {"jpeg75": 0.3, "tv": best_baseline},
                                   "clean_drop_pp": -0.3},
                        "vgg": {"mean_purified": seen_purified - 0.05}, "mlp": {"mean_purified": mlp_purified}},
            "clean": {"resnet": {"none": {"acc": seen_clean}}, "vgg": {"none": {"acc": 0.82}}, "mlp": {"none": {"acc": mlp_clean}}}}


def test_target_rows_say_by_how_much_each_target_is_missed_and_which_are_out_of_reach():
    rows = target_rows(_results(0.72, 0.399), (0.70, 0.739))
    assert rows[0] == ("mean purified accuracy over the 7 paper attacks ≥ 80%", "72.0% (95% interval 70.0–73.9%)",
                       "missed by 8.0 pp")
    assert rows[1] == ("≥ best baseline + 10 pp", "best baseline tv 39.9%, margin +32.1 pp", "met")
    assert rows[2] == ("clean accuracy lost ≤ 2 pp", "-0.3 pp", "met")
    assert rows[3] == ("unseen `vgg` within 10 pp of the seen classifier", "-5.0 pp", "met")
    assert rows[4][1:] == ("-51.1 pp", "missed by 41.1 pp (out of reach: it needs 62.0%, above that classifier's clean accuracy, 59.4%)")
    reachable = target_rows(_results(0.72, 0.399, mlp_clean=0.63), (0.70, 0.739))[4]
    assert reachable[2] == "missed by 41.1 pp"


def test_the_baseline_margin_is_out_of_reach_when_the_best_baseline_is_near_clean_accuracy():
    mnist = target_rows(_results(0.982, 0.923, seen_clean=0.997), (0.975, 0.987))
    assert mnist[1][2] == "missed by 4.1 pp (out of reach: it needs 102.3%, above that classifier's clean accuracy, 99.7%)"
    assert target_rows(_results(0.982, 0.85, seen_clean=0.997), (0.975, 0.987))[1][2] == "met"


def test_targets_section_points_to_what_was_tried_only_for_a_bundle_that_misses_one(tmp_path):
    missed = targets_section(_results(0.72, 0.399), (0.70, 0.739), tmp_path)
    assert missed.startswith("## Targets (oblivious attacks, seen classifier)\n\n| target | measured | verdict |\n|---|---|---|\n")
    assert missed.endswith("\n\nWhat was tried for the missed targets is not recorded in this bundle (no `attempts.md` "
                           "beside this card).\n")
    assert "| ≥ best baseline + 10 pp | best baseline tv 39.9%, margin +32.1 pp | met |" in missed
    assert "\n\nNo purifier can lift" in missed and "of different strength.\n\n" in missed
    mnist = targets_section(_results(0.982, 0.923, seen_clean=0.997, mlp_clean=0.97, mlp_purified=0.937), (0.97, 0.99), tmp_path)
    assert "out of reach whatever the purifier.\n\n" in mnist
    (tmp_path / "attempts.md").write_text("- guidance 30: 67.6 → 72.0%\n")
    tried = targets_section(_results(0.72, 0.399), (0.70, 0.739), tmp_path)
    assert tried.endswith("\n\nWhat was tried for the missed targets, with the command behind each figure: "
                          "[attempts.md](attempts.md).\n")
    met = targets_section(_results(0.85, 0.5, mlp_clean=0.9, mlp_purified=0.8), (0.83, 0.87), tmp_path)
    assert met.endswith("| met |\n") and "What was tried" not in met and "No purifier" not in met


def test_share_of_clean_accuracy_survives_a_classifier_with_none():
    assert share(0.72, 0.85) == "85%"
    assert share(0.0, 0.0) == "–"


def test_pair_attack_parameters_give_each_kind_once_with_pgds_step_as_a_share_of_its_budget():
    pgd = lambda eps: {"n": 10, "classifier": "cnn", "params": {"eps": eps, "alpha": eps / 4, "steps": 10, "random_start": True}}
    pairs = {"seed": 1, "attacks": {"FGSM(eps=0.0500)": {"n": 10, "params": {"eps": 0.05}}, "PGD(eps=0.0500)": pgd(0.05),
                                    "PGD(eps=0.1000) on fc": pgd(0.1), "CW": {"n": 5, "params": {"c": 5.0, "steps": 50}}}}
    assert pair_attack_parameters(pairs) == ('- Training attacks (torchattacks, seed 1): FGSM ε only; '
                                             'PGD `{"alpha": "ε/4", "steps": 10, "random_start": true}`; CW `{"c": 5.0, "steps": 50}`.')
    assert pair_attack_parameters({}) == ""


def test_weak_attacks_explain_fgsm_and_flag_any_other_attack_left_above_near_zero():
    per_attack = {"FGSM": {"none": {"acc": 0.164}}, "PGD": {"none": {"acc": 0.002}}, "CW": {"none": {"acc": 0.3}}}
    text = weak_attacks(per_attack)[0]
    assert text.startswith("Attacks that leave the undefended classifier above 5%: FGSM 16.4%, a single step")
    assert "CW" not in text  # an L2 attack: its success rate and median L2 are reported instead
    per_attack["BIM"] = {"none": {"acc": 0.2}}
    assert "BIM 20.0%, a configuration to fix before trusting its figures" in weak_attacks(per_attack)[0]
    assert weak_attacks({"PGD": {"none": {"acc": 0.05}}}) == []


def test_sweep_section_tabulates_each_budget_on_the_images_it_is_given():
    point = lambda eps, none, purified: {"eps": eps, "none": none, "purifier": purified, "tv": 0.5}
    results = {"sweep": {"FGSM": [point(0.15, 0.106, 0.984), point(0.3, 0.104, 0.978)],
                         "PGD": [point(0.15, 0.084, 0.988), point(0.3, 0.004, 0.984)]}}
    lines = sweep_section(results, 500).split("\n")
    assert lines[0].startswith("The figure's ε sweep: FGSM and PGD with") and "n = 500 (the first test images" in lines[0]
    assert lines[2] == "| ε | FGSM, none | FGSM, purifier | PGD, none | PGD, purifier |"
    assert lines[3] == "|---|---|---|---|---|"
    assert lines[4:] == ["| 0.15 | 10.6 | 98.4 | 8.4 | 98.8 |", "| 0.3 | 10.4 | 97.8 | 0.4 | 98.4 |"]


def test_recorded_options_read_the_sweeps_image_count_from_the_recorded_command():
    assert recorded_options("python -m purifyd_train evaluate --dataset mnist --n 2000 --sweep-n 500").sweep_n == 500
    assert recorded_options("python -m purifyd_train evaluate --dataset mnist --quick").sweep_n == 100


def test_each_shipped_dataset_card_is_what_its_results_render():
    models = Path(__file__).resolve().parents[2] / "models"
    shipped = [models / name for name in DATASETS if (models / name / "results.json").exists()]
    assert shipped
    for bundle in shipped:
        results = json.loads((bundle / "results.json").read_text())
        card = render_card(spec(bundle.name), results, bundle, recorded_options(results["command"]).sweep_n)
        assert card == (bundle / "card.md").read_text(), f"{bundle / 'card.md'}: python -m purifyd_train evaluate --dataset {bundle.name} --card-only"
        assert "$" not in card and "issue" not in card.lower() and "this machine" not in card
