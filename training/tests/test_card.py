from purifyd_train.card import kept_epochs, noise_pairs, validation_sets


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
